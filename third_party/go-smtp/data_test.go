package smtp

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"testing"
)

// byteLoop is dataReader.Read of v0.25.1 over a whole stream: what it
// returns before the end-of-data line, and whether it saw that line.
func byteLoop(data []byte) (out []byte, eof bool) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
	)
	state := stateBeginLine
	for _, c := range data {
		switch state {
		case stateBeginLine:
			if c == '.' {
				state = stateDot
				continue
			}
			if c == '\r' {
				state = stateCR
				break
			}
			state = stateData
		case stateDot:
			if c == '\r' {
				state = stateDotCR
				continue
			}
			state = stateData
		case stateDotCR:
			if c == '\n' {
				return out, true
			}
			state = stateData
		case stateCR:
			if c == '\n' {
				state = stateBeginLine
				break
			}
			state = stateData
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
		out = append(out, c)
	}
	return out, false
}

// TestDataReaderEquivalent: postcove's fast path of dataReader.Read (runs
// of a line copied at once) returns what the byte loop of v0.25.1 did and
// stops at the same end of data, whatever the sizes of the reads below and
// above it. Dot-unstuffing and the end-of-data rule are what SMTP
// smuggling attacks, so the two must not differ on any input.
func TestDataReaderEquivalent(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pieces := []string{"a", "xyz", ".", "..", "\r", "\n", "\r\n", "\r\n.\r\n", "\n.\r\n", "\r.\r\n", "\n.\n", ".\r", "\r\n.", "hello world"}
	for iter := 0; iter < 50000; iter++ {
		var data []byte
		for i := 0; i < rng.Intn(30); i++ {
			data = append(data, pieces[rng.Intn(len(pieces))]...)
		}
		want, wantEOF := byteLoop(data)
		src := &chunkReader{data: append([]byte(nil), data...), rng: rng}
		r := &dataReader{r: bufio.NewReaderSize(io.MultiReader(readerFunc(func(b []byte) (int, error) {
			if len(src.data) == 0 {
				return 0, io.EOF
			}
			return src.Read(b)
		})), 16)}
		var got []byte
		var err error
		for err == nil {
			buf := make([]byte, 1+rng.Intn(20))
			var n int
			n, err = r.Read(buf)
			got = append(got, buf[:n]...)
		}
		gotEOF := err == io.EOF
		if !bytes.Equal(got, want) || gotEOF != wantEOF {
			t.Fatalf("data %q: got %q (end of data %v), byte loop %q (%v)", data, got, gotEOF, want, wantEOF)
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
