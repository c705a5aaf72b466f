package dkimsign

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/testlib"
)

// keyring writes keys for domain under a fresh keys directory and
// returns it with a TXT lookup serving their records, as DNS would.
func keyring(t *testing.T, domain string, keys map[string]dkimkey.Type) (string, func(string) ([]string, error)) {
	t.Helper()
	dir := testlib.TempDir(t)
	records := map[string]string{}
	for sel, typ := range keys {
		k, err := dkimkey.Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dkimkey.Write(dir, domain, sel, k, false); err != nil {
			t.Fatal(err)
		}
		rec, err := dkimkey.Record(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		records[dkimkey.RecordName(domain, sel)] = rec
	}
	return dir, func(name string) ([]string, error) {
		if r, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{r}, nil
		}
		return nil, errors.New("no such record")
	}
}

const header = "From: Alice <alice@example.org>\r\nTo: bob@remote.example\r\nSubject: signed\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\n"
const body = "Hello,\r\n\r\nthis is signed.\r\n"

// TestSign: a domain with an RSA and an Ed25519 key gets two signatures
// that verify, From oversigned; the older RSA selector is not used.
func TestSign(t *testing.T) {
	dir, lookup := keyring(t, "example.org", map[string]dkimkey.Type{
		"2025a": dkimkey.RSA2048, "2026a": dkimkey.RSA2048, "2026e": dkimkey.Ed25519,
	})
	s := New(dir, 0)
	sigs, err := s.Sign("alice@Example.ORG", []byte(header), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 2 {
		t.Fatalf("got %d signatures, want 2: %q", len(sigs), sigs)
	}
	msg := strings.Join(sigs, "") + header + body
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "example.org" {
			t.Errorf("verification %+v", v)
		}
		if n := countFold(v.HeaderKeys, "from"); n != 2 {
			t.Errorf("h= signs From %d times, want 2 (oversigned): %q", n, v.HeaderKeys)
		}
	}
	// The newest selector of each algorithm (the signature text is
	// folded; unfold it to read the tags).
	unfolded := strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(strings.Join(sigs, "|"))
	for _, want := range []string{"a=rsa-sha256;", "s=2026a;", "a=ed25519-sha256;", "s=2026e;"} {
		if !strings.Contains(unfolded, want) {
			t.Errorf("signatures lack %s: %s", want, unfolded)
		}
	}
	if strings.Contains(unfolded, "s=2025a") {
		t.Errorf("the older RSA selector signed: %s", unfolded)
	}

	// A changed body or an added From breaks it.
	for _, tampered := range []string{
		strings.Join(sigs, "") + header + "Hello,\r\n\r\nthis is not signed.\r\n",
		strings.Join(sigs, "") + "From: mallory@evil.example\r\n" + header + body,
	} {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Errorf("tampered message verified:\n%s", tampered)
			}
		}
	}
}

func countFold(list []string, s string) int {
	n := 0
	for _, x := range list {
		if strings.EqualFold(x, s) {
			n++
		}
	}
	return n
}

// TestSignNoKeys: a domain without keys is sent unsigned, without error.
func TestSignNoKeys(t *testing.T) {
	dir, _ := keyring(t, "example.org", map[string]dkimkey.Type{"s1": dkimkey.Ed25519})
	s := New(dir, 0)
	for _, from := range []string{"someone@other.example", "not an address", "x@-bad-"} {
		if sigs, err := s.Sign(from, []byte(header), strings.NewReader(body)); err != nil || len(sigs) != 0 {
			t.Errorf("Sign(%q) = %q, %v, want nothing", from, sigs, err)
		}
	}
}

// TestSignBrokenKey: a key file that does not load is an error (the SMTP
// side answers 451), not silently unsigned mail.
func TestSignBrokenKey(t *testing.T) {
	dir := testlib.TempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "example.org"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.org", "s1.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir, 0).Sign("alice@example.org", []byte(header), strings.NewReader(body)); err == nil {
		t.Error("Sign with a broken key = nil error")
	}
}
