package imapclient_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/imapclient"
)

// fakeServer greets, then answers each command line with the response
// scripted for its name, the tag filled in for %[1]s.
func fakeServer(t *testing.T, script map[string]string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(conn, "* OK fake ready\r\n")
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			fmt.Fprintf(conn, script[f[1]], f[0])
		}
	}()
	return lis.Addr().String()
}

func TestClient(t *testing.T) {
	body := "Subject: x\r\n\r\nhello {5}\r\n"
	addr := fakeServer(t, map[string]string{
		"LOGIN":  "* CAPABILITY IMAP4rev1\r\n%[1]s OK logged in\r\n",
		"SELECT": "* FLAGS (\\Seen)\r\n* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n%[1]s OK [READ-WRITE] done\r\n",
		"UID":    fmt.Sprintf("* 1 FETCH (UID 7 BODY[] {%d}\r\n%s RFC822.SIZE 3 BODY[HEADER] {2}\r\nab)\r\n%%[1]s OK done\r\n", len(body), body),
		"SEARCH": "%[1]s NO [CANNOT] no\r\n",
		"NOOP":   "+ what\r\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := imapclient.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, `a"b`, `p\w`); err != nil {
		t.Fatalf("Login() = %v", err)
	}
	if n, err := c.Select(ctx, "INBOX"); n != 3 || err != nil {
		t.Errorf("Select() = %d, %v, want 3", n, err)
	}
	var got []imapclient.Untagged
	err = c.Command(ctx, "UID FETCH 7 (BODY.PEEK[] BODY.PEEK[HEADER])", func(u imapclient.Untagged) error {
		got = append(got, imapclient.Untagged{Line: append([]byte(nil), u.Line...), Literals: u.Literals})
		return nil
	})
	if err != nil {
		t.Fatalf("UID FETCH = %v", err)
	}
	if len(got) != 1 || len(got[0].Literals) != 2 || string(got[0].Literals[0]) != body || string(got[0].Literals[1]) != "ab" {
		t.Fatalf("UID FETCH responses = %q", got)
	}
	if want := fmt.Sprintf("1 FETCH (UID 7 BODY[] {%d}\r\n RFC822.SIZE 3 BODY[HEADER] {2}\r\n)", len(body)); string(got[0].Line) != want {
		t.Errorf("line = %q, want %q", got[0].Line, want)
	}
	var se *imapclient.StatusError
	if err := c.Command(ctx, `SEARCH TEXT "x"`, nil); !errors.As(err, &se) || se.Line != "NO [CANNOT] no" {
		t.Errorf("SEARCH = %v, want StatusError NO", err)
	}
	if err := c.Command(ctx, "NOOP", nil); err == nil || !strings.Contains(err.Error(), "unexpected response") {
		t.Errorf("NOOP answered by a continuation = %v, want an error", err)
	}
}

func TestDialBadGreeting(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if conn, err := lis.Accept(); err == nil {
			fmt.Fprint(conn, "* BYE busy\r\n")
			conn.Close()
		}
	}()
	if _, err := imapclient.Dial(context.Background(), lis.Addr().String()); err == nil || !strings.Contains(err.Error(), "want * OK") {
		t.Errorf("Dial() = %v, want a greeting error", err)
	}
}

func TestQuote(t *testing.T) {
	if got, want := imapclient.Quote(`a"b\c`), `"a\"b\\c"`; got != want {
		t.Errorf("Quote() = %s, want %s", got, want)
	}
}
