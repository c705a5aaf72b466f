package queue

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// FuzzEnvelope: the envelope parser never panics on damaged files, and
// what it accepts encodes back to an equal envelope.
func FuzzEnvelope(f *testing.F) {
	env := Envelope{
		ID: "0000000000001-00112233aabbccdd", Sender: "alice@example.org", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		AuthUser: "alice@example.org", Junk: true, Ret: "HDRS", EnvID: "e1",
		Recipients: []Recipient{
			{Address: "bob@example.org", Orig: "b@example.org", Route: RouteLocal, Notify: "FAILURE,DELAY"},
			{Address: "c@remote.example", Route: RouteRemote, Status: Deferred, Attempts: 2, Retry: time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC),
				Last: Result{Code: 451, Enhanced: "4.7.1", Text: "later", RemoteMTA: "mx.remote.example"}},
			{Address: "d@remote.example", Route: RouteRemote, Status: Failed, Reported: true, Last: Result{Code: 550, Text: "no"}},
		},
	}
	seed, err := marshalEnvelope(env)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"version":1,"id":"a","sender":"","recipients":[{"address":"x","route":0,"status":"pending"}],"received_at":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"id":"../x"}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := parseEnvelope(data)
		if err != nil {
			return
		}
		again, err := marshalEnvelope(env)
		if err != nil {
			t.Fatalf("marshalEnvelope(parsed %+v) = %v", env, err)
		}
		env2, err := parseEnvelope(again)
		if err != nil {
			t.Fatalf("parseEnvelope(%q) = %v after encoding an accepted envelope", again, err)
		}
		if !reflect.DeepEqual(env, env2) {
			t.Fatalf("round trip changed the envelope:\n%+v\n%+v", env, env2)
		}
	})
}

// FuzzCRLFWriter: the streaming crlfWriter, whatever the write
// boundaries, gives what a plain byte-by-byte rewrite gives.
func FuzzCRLFWriter(f *testing.F) {
	for _, s := range []string{"", "a\r\nb\r\n", "a\nb\r", "\r\r\n\n", "x\r\n.\nq\r.\r\n", "no end"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		var got bytes.Buffer
		w := &crlfWriter{w: &got}
		n := max(int(step), 1)
		for i := 0; i < len(in); i += n {
			if _, err := w.Write(in[i:min(i+n, len(in))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if want := referenceCRLF(in); got.String() != want {
			t.Fatalf("crlfWriter(%q, step %d) = %q, want %q", in, n, got.String(), want)
		}
	})
}

// referenceCRLF is the rule crlfWriter implements, written the slow and
// obvious way: each CR LF, lone CR and lone LF becomes CR LF, and a last
// line without an ending gets one.
func referenceCRLF(in []byte) string {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case in[i] == '\r' || in[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, in[i])
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return string(out)
}

// FuzzMsgFile: reading a damaged message file never panics, and never
// accepts one whose CRC does not match its content.
func FuzzMsgFile(f *testing.F) {
	env := Envelope{ID: "0000000000001-00112233aabbccdd", Sender: "a@example.org", ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Recipients: []Recipient{{Address: "b@example.org"}}}
	envData, err := json.Marshal(record{Version: envelopeVersion, Envelope: env})
	if err != nil {
		f.Fatal(err)
	}
	body := "Subject: x\r\n\r\nhi\r\n"
	crc := newCRC()
	crc.Write([]byte(body))
	crc.Write(envData)
	good := body + string(envData) + string(trailer(int64(len(body)), len(envData), crc.Sum32()))
	f.Add([]byte(good))
	f.Add([]byte(good[:len(good)-1]))
	f.Add([]byte(trailerMagic))
	f.Add([]byte(""))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "m")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		got, n, err := readMsgFile(file, nil)
		if err != nil {
			return
		}
		if n < 0 || n > int64(len(data)) {
			t.Fatalf("body size %d of a %d-byte file", n, len(data))
		}
		if err := validate(got); err != nil {
			t.Fatalf("accepted an invalid envelope: %v", err)
		}
	})
}
