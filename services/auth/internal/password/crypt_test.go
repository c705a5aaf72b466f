package password

import (
	"errors"
	"strings"
	"testing"
)

// Known answers from sources other than dovecot: the SHA-crypt
// specification's own test vectors, OpenSSL 3.0 (`openssl passwd -1/-5/-6`)
// and libxcrypt (Python's crypt.crypt on Debian 12). They pin the corner
// cases of the algorithms: empty password and salt, passwords exactly one
// digest long and longer, salts cut at 16 characters, rounds=N.
func TestCryptKnownAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		plain, stored string
	}{
		// SHA-crypt specification, https://www.akkadia.org/drepper/SHA-crypt.txt.
		{"Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
		// OpenSSL.
		{"Hello world!", "$6$toolongsaltstrin$iGlL7EUUfzNQx59x3ydJZ.zXPMUu1dOynSEl/vcNhLlas77qD0DzRswhhB6LdrXTz250at0syAfUXra.XrxAI1"},
		{strings.Repeat("x", 200), "$6$Q$SDoARM0khQEM4ALU1HNyDkCpM3nHoWHPh7bzR/i.y9/IyoiRGqPmS4nQNtjElZiIBM2TOBjlGGTWDBWFuLusw0"},
		{"Hello world!", "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1"},
		// libxcrypt.
		{"Hello world!", "$5$rounds=5000$toolongsaltstrin$0vuwUia3Nx9V/DqToMS8YLcfXpEXmSaC8wgguLIbus2"},
		{"", "$6$$/chiBau24cE26QQVW3IfIe68Xu5.JQ4E8Ie7lcRLwqxO5cxGuBhqF2HmTL.zWJ9zjChg3yJYFXeGBQ2y3Ba1d1"},
		{"", "$5$abc$bBHLwRRW2Li0XKaX13kz/g2fkDil4Jx46aNvd.48MS8"},
		{"a", "$5$rounds=1000$s$z5VgeXlzT.M8/EMRKo9XOcikNGiuKT9gSGajArVUrH0"},
		{strings.Repeat("x", 64), "$6$rounds=1000$exactly64$qQvFAJUJJQ/bTuIQABwMSCIyevLDhH57dxIAImjj2aNuWpfEGVRjj9SydVh/O0lFjpLW4qLZdnvnNbWv11Dd/."},
		{strings.Repeat("y", 32), "$5$rounds=1000$exactly32$b3RbbanvEgol/xTe7XbzCL69ryIO1MusacPNl3Atz73"},
		{strings.Repeat("y", 33), "$5$rounds=1000$x$GE2mF0eRKtMUxCX6Cr2GxupXBiBoGSSoHeuO71jfdJ8"},
		{"", "$1$abc$Or2rbeUYTvt12aiVzMuS/."},
		{"", "$1$$qRPK7m23GJusamGpoGLby/"},
		{strings.Repeat("a", 17), "$1$12345678$ZOc3UUmPqaS.unXuQXzOQ."},
		{"pässwörd", "$1$x$JCGkBY00FL7KZ2Wf1VmLX."},
	}
	h := New(testParams)
	for _, tt := range tests {
		ok, rehash, err := h.Verify(tt.stored, tt.plain)
		if !ok || !rehash || err != nil {
			t.Errorf("Verify(%q, %q) = %v, %v, %v, want true, true, nil", tt.stored, tt.plain, ok, rehash, err)
		}
		if ok, _, _ := h.Verify(tt.stored, tt.plain+"!"); ok {
			t.Errorf("Verify(%q, %q) = true, want false", tt.stored, tt.plain+"!")
		}
	}
}

// The specification's "rounds=10" vectors show glibc's crypt() clamping the
// rounds and printing rounds=1000; libxcrypt, which dovecot calls on Debian,
// refuses rounds below 1000 outright. Either way a stored string still saying
// rounds=10 never verifies, so parse rejects it rather than clamping, while
// the clamped output verifies.
func TestSHACryptRoundsOutOfRange(t *testing.T) {
	t.Parallel()
	const plain = "the minimum number is still observed"
	h := New(testParams)
	for _, sum := range []string{
		"$5$rounds=%s$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
		"$6$rounds=%s$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
	} {
		clamped := strings.Replace(sum, "%s", "1000", 1)
		if ok, _, err := h.Verify(clamped, plain); !ok || err != nil {
			t.Errorf("Verify(%q, %q) = %v, _, %v, want true, _, nil", clamped, plain, ok, err)
		}
		low := strings.Replace(sum, "%s", "10", 1)
		if _, err := parse(low); !errors.Is(err, ErrMalformed) {
			t.Errorf("parse(%q) = %v, want %v", low, err, ErrMalformed)
		}
	}
}

func TestParseSHACrypt(t *testing.T) {
	t.Parallel()
	const sum = "5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
	tests := []struct {
		stored string
		want   shaCryptHash
	}{
		{"$5$saltstring$" + sum, shaCryptHash{rounds: 5000, salt: "saltstring", hash: sum}},
		{"$5$rounds=1000$s$" + sum, shaCryptHash{rounds: 1000, salt: "s", hash: sum}},
		{"$5$rounds=999999999$$" + sum, shaCryptHash{rounds: 999999999, salt: "", hash: sum}},
	}
	for _, tt := range tests {
		got, err := parseSHACrypt(tt.stored)
		if err != nil || *got != tt.want {
			t.Errorf("parseSHACrypt(%q) = %+v, %v, want %+v, nil", tt.stored, got, err, tt.want)
		}
	}
}

// bcrypt only reads the first 72 bytes of a password, in dovecot
// (crypt_blowfish) as in golang.org/x/crypto/bcrypt.
func TestBcryptTruncatesAt72Bytes(t *testing.T) {
	t.Parallel()
	var stored string
	for _, v := range readVectors(t) {
		if strings.HasPrefix(v.hash, "{BLF-CRYPT}") && len(v.password) > 72 {
			stored = v.hash
		}
	}
	if stored == "" {
		t.Fatal("no BLF-CRYPT vector with a password over 72 bytes")
	}
	h := New(testParams)
	for plain, want := range map[string]bool{
		strings.Repeat("x", 72):  true,
		strings.Repeat("x", 500): true,
		strings.Repeat("x", 71):  false,
	} {
		if ok, _, err := h.Verify(stored, plain); ok != want || err != nil {
			t.Errorf("Verify(%q, <%d x>) = %v, _, %v, want %v, _, nil", stored, len(plain), ok, err, want)
		}
	}
}
