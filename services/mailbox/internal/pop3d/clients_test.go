package pop3d

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Tests with POP3 clients nobody on this team wrote: Python's poplib, curl
// and fetchmail. testlib.RequireTool skips them where a tool is missing,
// except in CI, where scripts/install-deps.sh installs them.

// poplibScript is a POP3 session in Python's poplib. It prints what the
// server said as JSON; the Go side checks it. Arguments: mode (plain,
// stls, ssl), host, port, user, password, CA file, then "dele" to delete
// message 1 before QUIT.
const poplibScript = `
import base64, json, poplib, ssl, sys

mode, host, port, user, password, cafile, action = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=cafile) if cafile else None
if mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=20)
else:
    p = poplib.POP3(host, int(port), timeout=20)
out = {"welcome": p.getwelcome().decode()}
out["capa_before"] = sorted(p.capa())
if mode == "stls":
    p.stls(context=ctx)
out["capa"] = sorted(p.capa())
p.user(user)
p.pass_(password)
out["stat"] = list(p.stat())
resp, lines, _ = p.list()
out["list"] = [l.decode() for l in lines]
resp, lines, _ = p.uidl()
out["uidl"] = [l.decode() for l in lines]
out["retr"] = []
for i in range(1, out["stat"][0] + 1):
    resp, lines, octets = p.retr(i)
    out["retr"].append({"resp": resp.decode(), "octets": octets,
                        "body": base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode()})
resp, lines, _ = p.top(1, 0)
out["top"] = [l.decode() for l in lines]
if action == "dele":
    p.dele(1)
out["quit"] = p.quit().decode()
print(json.dumps(out))
`

// poplibResult is what poplibScript prints.
type poplibResult struct {
	Welcome    string   `json:"welcome"`
	CapaBefore []string `json:"capa_before"`
	Capa       []string `json:"capa"`
	Stat       []int    `json:"stat"`
	List       []string `json:"list"`
	UIDL       []string `json:"uidl"`
	Retr       []struct {
		Resp   string `json:"resp"`
		Octets int    `json:"octets"`
		Body   []byte `json:"body"`
	} `json:"retr"`
	Top  []string `json:"top"`
	Quit string   `json:"quit"`
}

// runTool runs a client with a timeout and returns its stdout, failing
// the test with its output when it exits non-zero (unless allowed).
func runTool(t *testing.T, allowExit []int, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if code != 0 && !slices.Contains(allowExit, code) {
		t.Fatalf("%s %q: exit %d\nstdout:\n%s\nstderr:\n%s", name, args, code, stdout.String(), stderr.String())
	}
	return stdout.String(), code
}

// TestPoplib: Python's poplib over plain TCP, STLS and POP3S, on both
// stores: the sizes it counts match LIST, the messages arrive as the wire
// form, and DELE + QUIT removes a message.
func TestPoplib(t *testing.T) {
	python := testlib.RequireTool(t, "python3")
	serverTLS, _, certs := tlsConfigs(t)
	modes := []struct {
		mode        string
		implicitTLS bool
		plaintext   bool
	}{
		{"plain", false, true},
		{"stls", false, false},
		{"ssl", true, false},
	}
	for _, m := range modes {
		t.Run(m.mode, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, st store.Store) {
				deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
				stored := inbox(t, st, testUser)
				ts := startServer(t, st, func(o *Options) {
					o.TLS = serverTLS
					o.ImplicitTLS = m.implicitTLS
					o.AllowPlaintextAuth = m.plaintext
				})
				host, port, _ := strings.Cut(ts.addr, ":")
				out, _ := runTool(t, nil, python, "-c", poplibScript, m.mode, host, port, testUser, testPass, certs.CA, "dele")
				var got poplibResult
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("poplib output %q: %v", out, err)
				}

				wires := []string{wireCRLF, wireLF, wireOdd}
				total := len(wireCRLF) + len(wireLF) + len(wireOdd)
				if want := []int{3, total}; !slices.Equal(got.Stat, want) {
					t.Errorf("poplib stat() = %v, want %v", got.Stat, want)
				}
				for i, w := range wires {
					if want := fmt.Sprintf("%d %d", i+1, len(w)); got.List[i] != want {
						t.Errorf("poplib list()[%d] = %q, want %q", i, got.List[i], want)
					}
					if want := fmt.Sprintf("%d %s", i+1, stored[i].ID); got.UIDL[i] != want {
						t.Errorf("poplib uidl()[%d] = %q, want %q", i, got.UIDL[i], want)
					}
					r := got.Retr[i]
					if r.Octets != len(w) || string(r.Body) != w {
						t.Errorf("poplib retr(%d) = %d octets %q, want %d octets %q", i+1, r.Octets, r.Body, len(w), w)
					}
					if want := "+OK " + strconv.Itoa(len(w)) + " octets"; r.Resp != want {
						t.Errorf("poplib retr(%d) response = %q, want %q", i+1, r.Resp, want)
					}
				}
				if want := []string{"From: bob@example.org", "Subject: one", ""}; !slices.Equal(got.Top, want) {
					t.Errorf("poplib top(1, 0) = %q, want %q", got.Top, want)
				}
				if m.mode == "stls" {
					if !slices.Contains(got.CapaBefore, "STLS") || slices.Contains(got.CapaBefore, "USER") {
						t.Errorf("poplib capa() before STLS = %q, want STLS and no USER", got.CapaBefore)
					}
				}
				// STLS is offered until the connection is TLS.
				if wantSTLS := m.mode == "plain"; !slices.Contains(got.Capa, "USER") || slices.Contains(got.Capa, "STLS") != wantSTLS {
					t.Errorf("poplib capa() = %q, want USER, and STLS %v", got.Capa, wantSTLS)
				}
				waitSessions(t, ts.srv)
				if left := ids(inbox(t, st, testUser)); !slices.Equal(left, []string{stored[1].ID, stored[2].ID}) {
					t.Errorf("INBOX after poplib dele(1) and quit() = %q, want %q", left, []string{stored[1].ID, stored[2].ID})
				}
			})
		})
	}
}

// TestCurl: curl's POP3 support (it logs in with AUTH PLAIN, the SASL
// mechanism CAPA offers): LIST, RETR, UIDL and TOP as custom requests,
// DELE, STLS required with --ssl-reqd, POP3S, and a wrong password.
func TestCurl(t *testing.T) {
	curl := testlib.RequireTool(t, "curl")
	serverTLS, _, certs := tlsConfigs(t)
	st := storeKinds()[1].open(t) // maildir
	deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
	stored := inbox(t, st, testUser)
	plain := startServer(t, st, func(o *Options) { o.TLS = serverTLS })
	strict := startServer(t, st, func(o *Options) {
		o.TLS = serverTLS
		o.AllowPlaintextAuth = false
	})
	implicit := startServer(t, st, func(o *Options) {
		o.TLS = serverTLS
		o.ImplicitTLS = true
		o.AllowPlaintextAuth = false
	})
	user := testUser + ":" + testPass
	crlfLines := func(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"list", []string{"pop3://" + plain.addr + "/"},
			crlfLines(fmt.Sprintf("1 %d", len(wireCRLF)), fmt.Sprintf("2 %d", len(wireLF)), fmt.Sprintf("3 %d", len(wireOdd)))},
		{"retr crlf", []string{"pop3://" + plain.addr + "/1"}, wireCRLF},
		{"retr bare lf", []string{"pop3://" + plain.addr + "/2"}, wireLF},
		{"uidl", []string{"-X", "UIDL", "pop3://" + plain.addr + "/"},
			crlfLines("1 "+stored[0].ID, "2 "+stored[1].ID, "3 "+stored[2].ID)},
		{"top", []string{"-X", "TOP 2 1", "pop3://" + plain.addr + "/"}, "Subject: two\r\n\r\nline1\r\n"},
		{"stls required", []string{"--ssl-reqd", "--cacert", certs.CA, "pop3://" + strict.addr + "/3"}, wireOdd},
		{"pop3s", []string{"--cacert", certs.CA, "pop3s://" + implicit.addr + "/1"}, wireCRLF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "30", "--user", user}, tt.args...)
			if got, _ := runTool(t, nil, curl, args...); got != tt.want {
				t.Errorf("curl %q = %q, want %q", tt.args, got, tt.want)
			}
		})
	}

	// Without STLS, the strict server refuses the login: curl exits with
	// CURLE_LOGIN_DENIED (67). So does a wrong password.
	for _, args := range [][]string{
		{"--user", user, "pop3://" + strict.addr + "/"},
		{"--user", testUser + ":wrong", "pop3://" + plain.addr + "/"},
	} {
		if _, code := runTool(t, []int{67}, curl, append([]string{"-sS", "--max-time", "30"}, args...)...); code != 67 {
			t.Errorf("curl %q exit = %d, want 67", args, code)
		}
	}

	// DELE as a custom request without a transfer (-I); curl sends QUIT.
	runTool(t, nil, curl, "-sS", "--max-time", "30", "--user", user, "-X", "DELE", "-I", "pop3://"+plain.addr+"/2")
	waitSessions(t, plain.srv)
	if got, want := ids(inbox(t, st, testUser)), []string{stored[0].ID, stored[2].ID}; !slices.Equal(got, want) {
		t.Errorf("INBOX after curl DELE 2 = %q, want %q", got, want)
	}
}

// TestFetchmail: fetchmail with UIDL bookkeeping (--keep --uidl fetches
// each message once, across runs), then without --keep, which deletes
// what it fetched; over STLS with certificate checks.
func TestFetchmail(t *testing.T) {
	fetchmail := testlib.RequireTool(t, "fetchmail")
	serverTLS, _, certs := tlsConfigs(t)
	st := storeKinds()[1].open(t) // maildir
	deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
	ts := startServer(t, st, func(o *Options) {
		o.TLS = serverTLS
		o.AllowPlaintextAuth = false
	})
	host, port, _ := strings.Cut(ts.addr, ":")
	dir := testlib.TempDir(t)
	out := filepath.Join(dir, "delivered")
	rc := filepath.Join(dir, "fetchmailrc")
	rcText := fmt.Sprintf("poll %s service %s protocol pop3 auth password\n  user %q password %q\n  sslproto 'TLS1.2+' sslcertck sslcertfile %q sslcommonname localhost\n  mda %q\n",
		host, port, testUser, testPass, certs.CA, "cat >> "+out)
	if err := os.WriteFile(rc, []byte(rcText), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) int {
		t.Helper()
		args := append([]string{"--fetchmailrc", rc, "--idfile", filepath.Join(dir, "fetchids"),
			"--pidfile", filepath.Join(dir, "pid"), "--nosyslog", "--nodetach", "--verbose"}, extra...)
		// 0: mail fetched, 1: no mail.
		_, code := runTool(t, []int{1}, fetchmail, args...)
		return code
	}
	t.Setenv("HOME", dir) // fetchmail reads and writes files under HOME

	if code := run("--keep", "--uidl"); code != 0 {
		t.Fatalf("first fetchmail --keep --uidl exit = %d, want 0 (mail fetched)", code)
	}
	delivered, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: one", "..two dots", "Subject: two", "line4", "last line without newline"} {
		if !bytes.Contains(delivered, []byte(want)) {
			t.Errorf("fetchmail delivered %q, want it to contain %q", delivered, want)
		}
	}
	if got := len(inbox(t, st, testUser)); got != 3 {
		t.Fatalf("INBOX after fetchmail --keep = %d messages, want 3", got)
	}
	if code := run("--keep", "--uidl"); code != 1 {
		t.Errorf("second fetchmail --keep --uidl exit = %d, want 1 (no new mail: UIDLs are stable)", code)
	}
	if code := run("--all"); code != 0 {
		t.Errorf("fetchmail --all exit = %d, want 0", code)
	}
	waitSessions(t, ts.srv)
	if got := len(inbox(t, st, testUser)); got != 0 {
		t.Errorf("INBOX after fetchmail without --keep = %d messages, want 0", got)
	}
}
