package password

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
)

// testParams are argon2id parameters cheap enough for tests that hash a lot.
var testParams = Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// vector is one line of testdata/doveadm-vectors.txt.
type vector struct {
	scheme, password, hash string
}

func readVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/doveadm-vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != 3 {
			t.Fatalf("bad vector line %q", line)
		}
		vs = append(vs, vector{fields[0], fields[1], fields[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no vectors")
	}
	return vs
}

// checkVerify checks that h.Verify(stored, plain) accepts plain, with
// needsRehash as wanted, and rejects two wrong passwords: one differing in
// the first byte and, when plain is shorter than bcrypt's 72-byte limit, one
// with a byte appended.
func checkVerify(t *testing.T, h *Hasher, stored, plain string, wantRehash bool) {
	t.Helper()
	ok, rehash, err := h.Verify(stored, plain)
	if !ok || rehash != wantRehash || err != nil {
		t.Errorf("Verify(%q, %q) = %v, %v, %v, want true, %v, nil", stored, plain, ok, rehash, err, wantRehash)
	}
	wrongs := []string{"!" + plain}
	if len(plain) < 72 {
		wrongs = append(wrongs, plain+"!")
	}
	for _, wrong := range wrongs {
		ok, rehash, err := h.Verify(stored, wrong)
		if ok || rehash || err != nil {
			t.Errorf("Verify(%q, %q) = %v, %v, %v, want false, false, nil", stored, wrong, ok, rehash, err)
		}
	}
}

func TestDoveadmVectors(t *testing.T) {
	t.Parallel()
	h := New(DefaultParams())
	for _, v := range readVectors(t) {
		t.Run(v.scheme, func(t *testing.T) {
			t.Parallel()
			checkVerify(t, h, v.hash, v.password, true)
			// Scheme names are case-insensitive.
			name, rest, _ := strings.Cut(v.hash[1:], "}")
			lower := "{" + strings.ToLower(name) + "}" + rest
			if ok, _, err := h.Verify(lower, v.password); !ok || err != nil {
				t.Errorf("Verify(%q, %q) = %v, _, %v, want true, _, nil", lower, v.password, ok, err)
			}
			// postfixadmin stores crypt and argon2 strings without a prefix.
			if !strings.Contains(name, ".") && strings.HasPrefix(rest, "$") {
				if ok, _, err := h.Verify(rest, v.password); !ok || err != nil {
					t.Errorf("Verify(%q, %q) = %v, _, %v, want true, _, nil", rest, v.password, ok, err)
				}
			}
		})
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	h := New(testParams)
	format := regexp.MustCompile(`^\{ARGON2ID\}\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	seen := map[string]bool{}
	for _, plain := range []string{"secret", "", "pässwörd ✓", strings.Repeat("x", maxPasswordLen)} {
		got, err := h.Hash(plain)
		if err != nil {
			t.Fatalf("Hash(%q) = %v, want nil error", plain, err)
		}
		if !format.MatchString(got) {
			t.Errorf("Hash(%q) = %q, want match for %v", plain, got, format)
		}
		if seen[got] {
			t.Errorf("Hash(%q) = %q twice, want a fresh salt each time", plain, got)
		}
		seen[got] = true
		ok, rehash, err := h.Verify(got, plain)
		if !ok || rehash || err != nil {
			t.Errorf("Verify(Hash(%q)) = %v, %v, %v, want true, false, nil", plain, ok, rehash, err)
		}
		if ok, _, _ := h.Verify(got, plain+"x"); ok {
			t.Errorf("Verify(Hash(%q), %q) = true, want false", plain, plain+"x")
		}
	}
}

func TestHashRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params Params
		plain  string
	}{
		{"too long", testParams, strings.Repeat("x", maxPasswordLen+1)},
		{"zero params", Params{}, "secret"},
		{"time 0", Params{Time: 0, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}, "secret"},
		{"time 101", Params{Time: 101, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}, "secret"},
		{"threads 0", Params{Time: 1, MemoryKiB: 64, Threads: 0, SaltLen: 16, KeyLen: 32}, "secret"},
		{"memory below 8 KiB per lane", Params{Time: 1, MemoryKiB: 15, Threads: 2, SaltLen: 16, KeyLen: 32}, "secret"},
		{"memory above 1 GiB", Params{Time: 1, MemoryKiB: 1<<20 + 1, Threads: 1, SaltLen: 16, KeyLen: 32}, "secret"},
		{"salt 7 bytes", Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 7, KeyLen: 32}, "secret"},
		{"key 15 bytes", Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 15}, "secret"},
		{"key 1025 bytes", Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 1025}, "secret"},
	}
	for _, tt := range tests {
		if got, err := New(tt.params).Hash(tt.plain); err == nil {
			t.Errorf("%s: Hash(%.10q...) = %q, nil, want an error", tt.name, tt.plain, got)
		}
	}
}

func TestDefaultParams(t *testing.T) {
	t.Parallel()
	want := Params{Time: 2, MemoryKiB: 19456, Threads: 1, SaltLen: 16, KeyLen: 32}
	if got := DefaultParams(); got != want {
		t.Errorf("DefaultParams() = %+v, want %+v", got, want)
	}
	if err := DefaultParams().Validate(); err != nil {
		t.Errorf("DefaultParams().Validate() = %v, want nil", err)
	}
}

func TestNeedsRehash(t *testing.T) {
	t.Parallel()
	stored, err := New(testParams).Hash("secret")
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(p *Params)) Params {
		p := testParams
		f(&p)
		return p
	}
	tests := []struct {
		name   string
		params Params
		want   bool
	}{
		{"same params", testParams, false},
		{"other memory", with(func(p *Params) { p.MemoryKiB = 128 }), true},
		{"other time", with(func(p *Params) { p.Time = 2 }), true},
		{"other threads", with(func(p *Params) { p.Threads = 2 }), true},
		{"other salt length", with(func(p *Params) { p.SaltLen = 32 }), true},
		{"other key length", with(func(p *Params) { p.KeyLen = 64 }), true},
		{"defaults", DefaultParams(), true},
	}
	for _, tt := range tests {
		ok, rehash, err := New(tt.params).Verify(stored, "secret")
		if !ok || rehash != tt.want || err != nil {
			t.Errorf("%s: Verify(%q, %q) = %v, %v, %v, want true, %v, nil", tt.name, stored, "secret", ok, rehash, err, tt.want)
		}
	}

	// The same hash written another way is rewritten in Hash's form.
	body := strings.TrimPrefix(stored, "{ARGON2ID}")
	for _, other := range []string{
		body,
		"{argon2id}" + body,
		"{ARGON2I}" + body,
		"{ARGON2ID.B64}" + base64.StdEncoding.EncodeToString([]byte(body)),
		"{ARGON2ID.HEX}" + hex.EncodeToString([]byte(body)),
	} {
		checkVerify(t, New(testParams), other, "secret", true)
	}

	// argon2i with exactly our parameters is still another algorithm.
	salt := []byte("0123456789abcdef")
	a := &argon2Hash{memory: testParams.MemoryKiB, time: testParams.Time, threads: testParams.Threads, salt: salt,
		key: argon2.Key([]byte("secret"), salt, testParams.Time, testParams.MemoryKiB, testParams.Threads, testParams.KeyLen)}
	checkVerify(t, New(testParams), "{ARGON2I}"+a.String(), "secret", true)
}

func TestVerifyPasswordTooLong(t *testing.T) {
	t.Parallel()
	h := New(testParams)
	long := strings.Repeat("a", maxPasswordLen+1)
	ok, rehash, err := h.Verify("{PLAIN}"+long, long)
	if ok || rehash || err != nil {
		t.Errorf("Verify({PLAIN}<%d bytes>, <same>) = %v, %v, %v, want false, false, nil", len(long), ok, rehash, err)
	}
	max := long[:maxPasswordLen]
	ok, rehash, err = h.Verify("{PLAIN}"+max, max)
	if !ok || !rehash || err != nil {
		t.Errorf("Verify({PLAIN}<%d bytes>, <same>) = %v, %v, %v, want true, true, nil", len(max), ok, rehash, err)
	}
}

func TestDummy(t *testing.T) {
	t.Parallel()
	h := New(testParams)
	const n = 8
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = h.Dummy() })
	}
	wg.Wait()
	for i := range n {
		if got[i] != got[0] {
			t.Fatalf("Dummy() = %q and %q, want one value", got[0], got[i])
		}
	}
	a, err := parse(got[0])
	if err != nil {
		t.Fatalf("parse(Dummy()) = %v, want nil error", err)
	}
	if ah, ok := a.(*argon2Hash); !ok || !ah.hasParams(testParams) {
		t.Errorf("Dummy() = %q, want argon2id with %+v", got[0], testParams)
	}
	for _, plain := range []string{"", "dummy", "password"} {
		ok, rehash, err := h.Verify(h.Dummy(), plain)
		if ok || rehash || err != nil {
			t.Errorf("Verify(Dummy(), %q) = %v, %v, %v, want false, false, nil", plain, ok, rehash, err)
		}
	}
	if other := New(testParams).Dummy(); other == got[0] {
		t.Errorf("Dummy() of two Hashers = %q both, want distinct salts", other)
	}

	bad := New(Params{})
	if d := bad.Dummy(); d != "" {
		t.Errorf("Dummy() with zero Params = %q, want \"\"", d)
	}
	if _, _, err := bad.Verify(bad.Dummy(), "x"); !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("Verify(Dummy() with zero Params) error = %v, want %v", err, ErrUnknownScheme)
	}
}

// argon2With builds an argon2id string with the given parameter field.
func argon2With(params string) string {
	return "$argon2id$v=19$" + params + "$c2FsdHNhbHRzYWx0c2FsdA$3wMuGj0dODzt6tc0XJ4ynMo7h5FvWBsl5pdqoDZTLaQ"
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	const (
		salt16 = "c2FsdHNhbHRzYWx0c2FsdA"                      // 16 bytes
		key32  = "3wMuGj0dODzt6tc0XJ4ynMo7h5FvWBsl5pdqoDZTLaQ" // 32 bytes
		sha512 = "2LyaZJTy7MuuzgM1wUCecGJ8dcYkbVL/Y2ZxaR8iWEjbzztqSCZ.Ua.VdaCWEui2gTXDM3Vs/q6qjHuoXGH1U0"
		bf     = ".ZjIDjbkXECwQyyLm2nhLO5giDxr8KQh.eWE/U76kzbtbdYRUILFG" // 53
	)
	tests := []struct {
		stored string
		want   error
	}{
		// No or unknown scheme.
		{"", ErrUnknownScheme},
		{"secret", ErrUnknownScheme},
		{"{}secret", ErrUnknownScheme},
		{"{FOO}bar", ErrUnknownScheme},
		{"{SHA.FOO}5en6G6MezRroT3XKqkdPOmY/BfQ=", ErrUnknownScheme},
		{"{SHA.}5en6G6MezRroT3XKqkdPOmY/BfQ=", ErrUnknownScheme},
		{"{.HEX}00", ErrUnknownScheme},
		{"{DES-CRYPT}ab01FAX.bQRSU", ErrUnknownScheme},
		{"{CRYPT}ab01FAX.bQRSU", ErrUnknownScheme},
		{"{CRYPT}$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", ErrUnknownScheme},
		{"{SHA512-CRYPT.B64}aGVsbG8=", ErrUnknownScheme}, // "hello"
		{"$2x$05$" + bf, ErrUnknownScheme},
		{"{BLF-CRYPT}$2x$05$" + bf, ErrUnknownScheme},
		{"$argon2d$v=19$m=64,t=1,p=1$" + salt16 + "$" + key32, ErrUnknownScheme},
		{"$argon2id$v=16$m=64,t=1,p=1$" + salt16 + "$" + key32, ErrUnknownScheme},
		{"$argon2id$m=64,t=1,p=1$" + salt16 + "$" + key32, ErrUnknownScheme},
		{"$argon2", ErrUnknownScheme},

		// Structure and encoding.
		{"{SHA", ErrMalformed},
		{"{SHA}", ErrMalformed},
		{"{SHA}!!!!", ErrMalformed},
		{"{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ", ErrMalformed},                 // unpadded, as dovecot
		{"{SHA}c2VjcmV0", ErrMalformed},                                    // 6 bytes, not 20
		{"{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05", ErrMalformed},  // 19 bytes
		{"{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f", ErrMalformed}, // odd
		{"{SHA.HEX}zze9fa1ba31ecd1ae84f75caaa474f3a663f05f4", ErrMalformed},
		{"{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5", ErrMalformed},
		{"{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", ErrMalformed}, // digest, no salt
		{"{SSHA512}GFHHB9o0gGjnsnkA", ErrMalformed},
		{"{SSHA.HEX}a929d63bfaf4e6e87f4539ce4bc3cecb679070a78ad94ff", ErrMalformed},
		{"{PLAIN.B64}c2VjcmV", ErrMalformed},
		{"{PLAIN.B64}c2VjcmV0==", ErrMalformed},
		{"{PLAIN.HEX}7365637", ErrMalformed},
		{"{SHA512-CRYPT.B64}!!", ErrMalformed},
		{"{MD5}nonsense", ErrMalformed},
		{"{PLAIN}" + strings.Repeat("x", maxStoredLen), ErrMalformed},

		// SHA-crypt.
		{"$6$", ErrMalformed},
		{"$6$salt", ErrMalformed},
		{"$6$salt$", ErrMalformed},
		{"$6$salt$" + sha512[1:], ErrMalformed},
		{"$6$salt$" + sha512 + "x", ErrMalformed},
		{"$6$salt$" + sha512[:85] + "!", ErrMalformed},
		{"$6$salt!$" + sha512, ErrMalformed},
		{"$6$saltsaltsaltsalts$" + sha512, ErrMalformed}, // 17-character salt
		{"$6$rounds=999$salt$" + sha512, ErrMalformed},
		{"$6$rounds=1000000000$salt$" + sha512, ErrMalformed},
		{"$6$rounds=99999999999999999999$salt$" + sha512, ErrMalformed},
		{"$6$rounds=01000$salt$" + sha512, ErrMalformed},
		{"$6$rounds=-5000$salt$" + sha512, ErrMalformed},
		{"$6$rounds=$salt$" + sha512, ErrMalformed},
		{"$6$rounds=5000", ErrMalformed},
		{"$5$salt$" + sha512, ErrMalformed},

		// md5crypt.
		{"$1$", ErrMalformed},
		{"$1$saltsalt", ErrMalformed},
		{"$1$saltsalts$XBCDoih8BxZLi9i08f4Tl/", ErrMalformed}, // 9-character salt
		{"$1$FRv1XxpE$XBCDoih8BxZLi9i08f4Tl", ErrMalformed},
		{"{MD5-CRYPT}$1$FRv1XxpE$XBCDoih8BxZLi9i08f4Tl/$", ErrMalformed},

		// bcrypt.
		{"$2y$", ErrMalformed},
		{"$2y$05$" + bf[:52], ErrMalformed},
		{"$2y$05$" + bf + "x", ErrMalformed},
		{"$2y$03$" + bf, ErrMalformed},
		{"$2y$32$" + bf, ErrMalformed},
		{"$2y$99$" + bf, ErrMalformed},
		{"$2y$1a$" + bf, ErrMalformed},
		{"$2y$05$" + bf[:52] + "!", ErrMalformed},
		{"{BLF-CRYPT}$2y$05x" + bf, ErrMalformed},

		// argon2: structure.
		{"{ARGON2ID}garbage", ErrMalformed},
		{"{ARGON2ID}$argon2id$", ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$" + salt16, ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$" + salt16 + "$" + key32 + "$", ErrMalformed},
		{"$argon2id$v=019$m=64,t=1,p=1$" + salt16 + "$" + key32, ErrMalformed},
		{"$argon2id$19$m=64,t=1,p=1$" + salt16 + "$" + key32, ErrMalformed},
		{argon2With("t=1,m=64,p=1"), ErrMalformed},
		{argon2With("m=64,t=1"), ErrMalformed},
		{argon2With("m=64,t=1,p=1,keyid=abc"), ErrMalformed},
		{argon2With("m=064,t=1,p=1"), ErrMalformed},
		{argon2With("m=-64,t=1,p=1"), ErrMalformed},
		{argon2With("m=+64,t=1,p=1"), ErrMalformed},
		{argon2With("m=6e1,t=1,p=1"), ErrMalformed},
		{argon2With("m=,t=1,p=1"), ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key32, ErrMalformed},            // 4-byte salt
		{"$argon2id$v=19$m=64,t=1,p=1$" + salt16 + "$c2FsdHNhbHQ", ErrMalformed}, // 8-byte hash
		{"$argon2id$v=19$m=64,t=1,p=1$" + salt16 + "==$" + key32, ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$" + salt16 + "$" + key32[:42] + "R", ErrMalformed}, // trailing bits
		{"$argon2id$v=19$m=64,t=1,p=1$c2FsdHN!bHRzYWx0c2FsdA$" + key32, ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNh\nbHRzYWx0c2FsdA$" + key32, ErrMalformed},

		// argon2: hostile costs are refused before any work.
		{argon2With("m=4294967295,t=1,p=1"), ErrMalformed},
		{argon2With("m=1048577,t=1,p=1"), ErrMalformed},
		{argon2With("m=99999999999,t=1,p=1"), ErrMalformed},
		{argon2With("m=64,t=101,p=1"), ErrMalformed},
		{argon2With("m=64,t=4294967295,p=1"), ErrMalformed},
		{argon2With("m=64,t=0,p=1"), ErrMalformed},
		{argon2With("m=64,t=1,p=0"), ErrMalformed},
		{argon2With("m=4096,t=1,p=256"), ErrMalformed},
		{argon2With("m=15,t=1,p=2"), ErrMalformed},
		{"$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("A", 1368) + "$" + key32, ErrMalformed}, // 1026-byte salt
	}
	h := New(testParams)
	for _, tt := range tests {
		ok, rehash, err := h.Verify(tt.stored, "secret")
		if ok || rehash || !errors.Is(err, tt.want) {
			t.Errorf("Verify(%.80q, %q) = %v, %v, %v, want false, false, %v", tt.stored, "secret", ok, rehash, err, tt.want)
		}
	}
}

// Errors end up in logs; they must not carry a stored cleartext password.
func TestErrorsDoNotLeakStored(t *testing.T) {
	t.Parallel()
	const secret = "hunter2"
	h := New(testParams)
	for _, stored := range []string{
		secret,
		"{" + secret,
		"{PLAIN.HEX}" + secret,
		"{PLAIN.B64}" + secret + "!",
		"{CLEARTEXT.FOO}" + secret,
		"{ARGON2ID}" + secret,
		"{SHA512-CRYPT}" + secret,
		"{SHA}" + secret,
		"{SHA.HEX}" + secret,
		"{SSHA}" + secret + "==",
		"{$6$" + secret + "}",
		"$6$" + secret,
		"$argon2id$v=19$m=" + secret,
		"$argon2id$" + secret,
		argon2With("m=" + secret + ",t=1,p=1"),
		"$argon2id$v=" + secret + "$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$3wMuGj0dODzt6tc0XJ4ynMo7h5FvWBsl5pdqoDZTLaQ",
		"$6$rounds=" + secret + "$salt$hash",
		"$2y$" + secret,
	} {
		_, _, err := h.Verify(stored, "x")
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Verify(%q, %q) error = %v, want an error without %q", stored, "x", err, secret)
		}
	}
}
