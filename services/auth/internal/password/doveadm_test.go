package password

import (
	"crypto/rand"
	"math/big"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/postcove/postcove/services/internal/testlib"
)

// liveSchemes are the doveadm pw -s schemes (and -r rounds) TestDoveadmLive
// hashes fresh passwords with: every scheme Verify supports.
var liveSchemes = []struct{ scheme, rounds string }{
	{"ARGON2ID", ""}, {"ARGON2I", ""},
	{"BLF-CRYPT", ""}, {"BLF-CRYPT", "4"},
	{"SHA512-CRYPT", ""}, {"SHA512-CRYPT", "1000"}, {"SHA512-CRYPT", "20000"},
	{"SHA256-CRYPT", ""}, {"SHA256-CRYPT", "7777"},
	{"MD5-CRYPT", ""}, {"MD5", ""},
	{"SSHA512", ""}, {"SSHA256", ""}, {"SSHA", ""}, {"SMD5", ""},
	{"SHA512", ""}, {"SHA256", ""}, {"SHA", ""}, {"SHA1", ""},
	{"PLAIN-MD5", ""}, {"LDAP-MD5", ""},
	{"PLAIN", ""}, {"CLEAR", ""}, {"CLEARTEXT", ""},
	{"SHA512.HEX", ""}, {"SHA256.HEX", ""}, {"SHA.HEX", ""}, {"SHA512.B64", ""},
	{"SSHA512.HEX", ""}, {"SSHA256.HEX", ""}, {"SSHA.HEX", ""}, {"SSHA.B64", ""},
	{"PLAIN.B64", ""}, {"PLAIN.HEX", ""}, {"CLEARTEXT.B64", ""},
	{"SHA512-CRYPT.B64", ""}, {"SHA512-CRYPT.HEX", "3000"}, {"SHA256-CRYPT.B64", ""},
	{"MD5-CRYPT.B64", ""}, {"BLF-CRYPT.B64", "4"}, {"BLF-CRYPT.HEX", ""},
	{"ARGON2ID.B64", ""}, {"ARGON2I.HEX", ""},
}

// randomPassword returns 1 to 100 characters drawn from ASCII letters,
// digits, punctuation, space and a few multi-byte runes, so that lengths
// cross the 32/64-byte digest sizes and bcrypt's 72-byte limit.
func randomPassword(t *testing.T) string {
	t.Helper()
	chars := []rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~äöüß€✓密码")
	n := 1 + randInt(t, 100)
	var b strings.Builder
	for range n {
		b.WriteRune(chars[randInt(t, len(chars))])
	}
	return b.String()
}

func randInt(t *testing.T, n int) int {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// TestDoveadmLive hashes fresh random passwords with dovecot's own generator
// for every supported scheme and verifies them.
func TestDoveadmLive(t *testing.T) {
	doveadm := testlib.RequireTool(t, "doveadm")
	t.Parallel()
	h := New(testParams)
	for _, s := range liveSchemes {
		name := s.scheme
		if s.rounds != "" {
			name += "/r" + s.rounds
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plain := randomPassword(t)
			args := []string{"pw", "-s", s.scheme, "-p", plain}
			if s.rounds != "" {
				args = append(args, "-r", s.rounds)
			}
			out, err := exec.Command(doveadm, args...).Output()
			if err != nil {
				t.Fatalf("doveadm %q: %v", args, err)
			}
			stored := strings.TrimSpace(string(out))
			if !strings.HasPrefix(strings.ToUpper(stored), "{"+s.scheme+"}") {
				t.Fatalf("doveadm %q = %q, want a {%s} hash", args, stored, s.scheme)
			}
			checkVerify(t, h, stored, plain, true)
		})
	}
}

// doveadmVerifies reports whether dovecot accepts plain for stored.
func doveadmVerifies(t *testing.T, doveadm, stored, plain string) bool {
	t.Helper()
	out, err := exec.Command(doveadm, "pw", "-t", stored, "-p", plain).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("doveadm pw -t: %v", err)
		}
		return false
	}
	return strings.Contains(string(out), "(verified)")
}

// TestDoveadmReadsOurHashes proves dovecot can read what Hash writes, with
// the default and with unusual parameters.
func TestDoveadmReadsOurHashes(t *testing.T) {
	doveadm := testlib.RequireTool(t, "doveadm")
	t.Parallel()
	for _, p := range []Params{
		DefaultParams(),
		{Time: 1, MemoryKiB: 8, Threads: 1, SaltLen: 8, KeyLen: 16},
		{Time: 3, MemoryKiB: 1024, Threads: 4, SaltLen: 32, KeyLen: 64},
		{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 1024, KeyLen: 1024},
	} {
		plain := randomPassword(t)
		stored, err := New(p).Hash(plain)
		if err != nil {
			t.Fatalf("Hash(%q) with %+v = %v", plain, p, err)
		}
		if !doveadmVerifies(t, doveadm, stored, plain) {
			t.Errorf("doveadm pw -t %q -p %q failed, want (verified)", stored, plain)
		}
		if doveadmVerifies(t, doveadm, stored, plain+"!") {
			t.Errorf("doveadm pw -t %q -p %q verified, want a mismatch", stored, plain+"!")
		}
	}
}

// TestDoveadmAgreesOnArgon2Bounds checks that the lower bounds on argon2
// parameters are exactly libsodium's: dovecot verifies a hash at each bound
// and rejects one just below it, and so do we.
func TestDoveadmAgreesOnArgon2Bounds(t *testing.T) {
	doveadm := testlib.RequireTool(t, "doveadm")
	t.Parallel()
	tests := []struct {
		memory, time    uint32
		threads         uint8
		saltLen, keyLen int
		want            bool
	}{
		{8, 1, 1, 8, 16, true},
		{16, 1, 2, 16, 32, true},
		{7, 1, 1, 16, 32, false},  // less than 8 KiB
		{15, 1, 2, 16, 32, false}, // less than 8 KiB per lane
		{64, 1, 1, 7, 32, false},  // salt shorter than 8 bytes
		{64, 1, 1, 16, 15, false}, // hash shorter than 16 bytes
	}
	for _, tt := range tests {
		salt := make([]byte, tt.saltLen)
		a := &argon2Hash{id: true, memory: tt.memory, time: tt.time, threads: tt.threads, salt: salt,
			key: argon2.IDKey([]byte("pw"), salt, tt.time, tt.memory, tt.threads, uint32(tt.keyLen))}
		stored := "{ARGON2ID}" + a.String()
		if got := doveadmVerifies(t, doveadm, stored, "pw"); got != tt.want {
			t.Errorf("doveadm pw -t %q = %v, want %v", stored, got, tt.want)
		}
		ok, _, err := New(testParams).Verify(stored, "pw")
		if ok != tt.want || (err == nil) != tt.want {
			t.Errorf("Verify(%q, %q) = %v, _, %v, want %v", stored, "pw", ok, err, tt.want)
		}
	}
}
