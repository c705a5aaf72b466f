package dkimkey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestRoundTrip: a generated key is written, loaded back, signs a message,
// and the message verifies against its record served from DNS in split
// strings, through dnsclient, by go-msgauth's verifier.
func TestRoundTrip(t *testing.T) {
	for _, typ := range []Type{RSA2048, Ed25519} {
		t.Run(string(typ), func(t *testing.T) {
			dir := t.TempDir()
			key, err := Generate(typ)
			if err != nil {
				t.Fatal(err)
			}
			path, err := Write(dir, "Example.ORG", "s202611", key, false)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, "example.org", "s202611.key"); path != want {
				t.Errorf("Write() path = %s, want %s", path, want)
			}
			checkMode(t, path, 0o600)
			checkMode(t, filepath.Dir(path), 0o700|os.ModeDir)
			loaded, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if !loaded.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Fatalf("Load(%s) returned another key", path)
			}
			verifyThroughDNS(t, loaded, "example.org", "s202611")
		})
	}
}

// verifyThroughDNS signs a message with key and verifies it against the
// key's record served by a test DNS server.
func verifyThroughDNS(t *testing.T, key crypto.Signer, domain, selector string) {
	t.Helper()
	rec, err := Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	parts := SplitTXT(rec)
	srv := testlib.StartDNS(t, fmt.Sprintf("%s. IN TXT \"%s\"", RecordName(domain, selector), strings.Join(parts, `" "`)))
	resolver, err := dnsclient.New([]string{srv.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: a@" + domain + "\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key}); err != nil {
		t.Fatal(err)
	}
	verifs, err := dkim.VerifyWithOptions(&signed, &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return resolver.TXT(context.Background(), name) },
	})
	if err != nil || len(verifs) != 1 || verifs[0].Err != nil {
		t.Fatalf("verify with record %q in %d strings: %v, %+v", rec, len(parts), err, verifs)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestWriteRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, _ := Generate(Ed25519)
	second, _ := Generate(Ed25519)
	path, err := Write(dir, "example.org", "s1", first, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Write(dir, "example.org", "s1", second, false); !errors.Is(err, ErrExists) || got != path || !strings.Contains(err.Error(), path) {
		t.Errorf("Write(existing) = %q, %v; want %q, %v naming the file", got, err, path, ErrExists)
	}
	if k, err := Load(path); err != nil || !k.Public().(ed25519.PublicKey).Equal(first.Public()) {
		t.Errorf("after a refused Write, Load() = %v, %v; want the first key", k, err)
	}
	if _, err := Write(dir, "example.org", "s1", second, true); err != nil {
		t.Fatalf("Write(existing, force) = %v", err)
	}
	if k, err := Load(path); err != nil || !k.Public().(ed25519.PublicKey).Equal(second.Public()) {
		t.Errorf("after Write(force), Load() = %v, %v; want the second key", k, err)
	}
	checkMode(t, path, 0o600)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only s1.key (no temporary files left)", entries)
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		domain, selector string
		want             string // relative to keys/; "" for an error
	}{
		{"example.org", "s202611", "example.org/s202611.key"},
		{"Example.ORG.", "S1", "example.org/s1.key"},
		{"bücher.example", "mail.2026-11", "xn--bcher-kva.example/mail.2026-11.key"},
		{"example.org", "../x", ""},
		{"example.org", "a/b", ""},
		{"example.org", "", ""},
		{"example.org", "..", ""},
		{"example.org", ".", ""},
		{"example.org", "a..b", ""},
		{"example.org", ".hidden", ""},
		{"example.org", "-a", ""},
		{"example.org", "a-", ""},
		{"example.org", "a_b", ""},
		{"example.org", `a\b`, ""},
		{"example.org", "s1 ", ""},
		{"example.org", strings.Repeat("a", 64), ""},
		{"example.org", strings.Repeat(strings.Repeat("a", 63)+".", 4) + "a", ""},
		{"../etc", "s1", ""},
		{"example.org/../x", "s1", ""},
		{"", "s1", ""},
		{"..", "s1", ""},
		{"localhost", "s1", ""},
	}
	for _, tt := range tests {
		got, err := Path("keys", tt.domain, tt.selector)
		want := ""
		if tt.want != "" {
			want = filepath.Join("keys", tt.want)
		}
		if got != want || (err == nil) != (tt.want != "") {
			t.Errorf("Path(keys, %q, %q) = %q, %v; want %q", tt.domain, tt.selector, got, err, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pemFile := func(typ string, der []byte, headers map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	t.Setenv("GODEBUG", "rsa1024min=0")
	smallKey, err := rsa.GenerateKey(rand.Reader, 512)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"opendkim.private", pemFile("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil), ""},
		{"ecdsa.key", pemFile("PRIVATE KEY", ecDER, nil), "cannot sign DKIM"},
		{"small.key", pemFile("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(smallKey), nil), "512 bits"},
		{"encrypted.key", pemFile("RSA PRIVATE KEY", []byte("x"), map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), "encrypted"},
		{"cert.pem", pemFile("CERTIFICATE", []byte("x"), nil), `"CERTIFICATE"`},
		{"garbage.key", []byte("not a key"), "no PEM block"},
		{"broken.key", pemFile("PRIVATE KEY", []byte("x"), nil), "broken.key"},
	}
	for _, tt := range tests {
		path := write(tt.name, tt.data)
		key, err := Load(path)
		if tt.wantErr == "" && (err != nil || !key.Public().(*rsa.PublicKey).Equal(rsaKey.Public())) {
			t.Errorf("Load(%s) = %v, %v; want the key", tt.name, key, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Load(%s) = %v; want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("Load(missing.key) = %v; want an error naming the file", err)
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	if keys, err := List(dir, "example.org"); err != nil || keys != nil {
		t.Errorf("List(no directory) = %v, %v; want none", keys, err)
	}
	for _, sel := range []string{"s202611", "a", "a-b"} {
		key, _ := Generate(Ed25519)
		if _, err := Write(dir, "example.org", sel, key, false); err != nil {
			t.Fatal(err)
		}
	}
	domainDir := filepath.Join(dir, "example.org")
	os.WriteFile(filepath.Join(domainDir, "README"), []byte("not a key"), 0o600)
	os.Mkdir(filepath.Join(domainDir, "old.key"), 0o700)
	keys, err := List(dir, "EXAMPLE.org")
	var sels []string
	for _, k := range keys {
		sels = append(sels, k.Selector)
		if k.Domain != "example.org" || k.Path != filepath.Join(domainDir, k.Selector+".key") || k.Signer == nil {
			t.Errorf("List() key %+v", k)
		}
	}
	if want := []string{"a", "a-b", "s202611"}; err != nil || !reflect.DeepEqual(sels, want) {
		t.Errorf("List() selectors = %q, %v; want %q", sels, err, want)
	}

	for name, wantErr := range map[string]string{"bad.key": "bad.key", "Upper.key": "lower-case", "a_b.key": "a_b.key"} {
		path := filepath.Join(domainDir, name)
		os.WriteFile(path, []byte("junk"), 0o600)
		if _, err := List(dir, "example.org"); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("List() with %s = %v; want an error containing %q", name, err, wantErr)
		}
		os.Remove(path)
	}
	if _, err := List(dir, "../x"); err == nil {
		t.Errorf("List(../x) = nil error")
	}
}

func TestRecord(t *testing.T) {
	// RFC 8463 Appendix A.2: the example Ed25519 key and its record.
	seed, _ := base64.StdEncoding.DecodeString("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
	edKey := ed25519.NewKeyFromSeed(seed)
	got, err := Record(edKey.Public())
	if want := "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="; got != want || err != nil {
		t.Errorf("Record(RFC 8463 key) = %q, %v; want %q", got, err, want)
	}

	rsaKey, _ := Generate(RSA2048)
	got, err = Record(rsaKey.Public())
	p, ok := strings.CutPrefix(got, "v=DKIM1; k=rsa; p=")
	der, _ := base64.StdEncoding.DecodeString(p)
	pub, _ := x509.ParsePKIXPublicKey(der)
	if err != nil || !ok || pub == nil || !pub.(*rsa.PublicKey).Equal(rsaKey.Public()) {
		t.Errorf("Record(RSA key) = %q, %v; want v=DKIM1; k=rsa; p=<its SubjectPublicKeyInfo>", got, err)
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if got, err := Record(ecKey.Public()); err == nil {
		t.Errorf("Record(ECDSA key) = %q, want an error", got)
	}
}

func TestSplitTXT(t *testing.T) {
	tests := []struct {
		len  int
		want []int
	}{{0, []int{0}}, {10, []int{10}}, {255, []int{255}}, {256, []int{255, 1}}, {600, []int{255, 255, 90}}}
	for _, tt := range tests {
		s := strings.Repeat("x", tt.len)
		var got []int
		for _, part := range SplitTXT(s) {
			got = append(got, len(part))
		}
		if !reflect.DeepEqual(got, tt.want) || strings.Join(SplitTXT(s), "") != s {
			t.Errorf("SplitTXT(%d bytes) = parts of %v, want %v", tt.len, got, tt.want)
		}
	}
}

func TestDefaultSelector(t *testing.T) {
	tests := []struct {
		now  time.Time
		want string
	}{
		{time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC), "s202611"},
		// Still October in UTC.
		{time.Date(2026, 11, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), "s202610"},
	}
	for _, tt := range tests {
		got := DefaultSelector(tt.now)
		if got != tt.want {
			t.Errorf("DefaultSelector(%v) = %q, want %q", tt.now, got, tt.want)
		}
		if _, err := ParseSelector(got); err != nil {
			t.Errorf("ParseSelector(DefaultSelector(%v)) = %v", tt.now, err)
		}
	}
}

func TestParseType(t *testing.T) {
	tests := []struct {
		in   string
		want Type
		ok   bool
	}{{"rsa2048", RSA2048, true}, {"ed25519", Ed25519, true}, {"rsa", "", false}, {"RSA2048", "", false}, {"", "", false}}
	for _, tt := range tests {
		got, err := ParseType(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseType(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if _, err := Generate("dsa"); err == nil {
		t.Errorf("Generate(dsa) = nil error")
	}
}
