package dnsrecord

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"slices"
	"testing"
)

// Keys made once for these tests: the same 1024-bit RSA key as
// SubjectPublicKeyInfo and as PKCS #1 RSAPublicKey, an Ed25519 key raw and
// wrongly as SubjectPublicKeyInfo, and a 512-bit RSA key.
const (
	testRSASPKI  = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDr3lMZ59WeI1cL5JwFafxxYLcYZ5f4gZKee+z3dkR8JdgSzrfayO/I91w73L7FKgxAB4hNoXe6a5X7mlxFaDay/zwOSgz5gaRI7NY6+Wm+sXstYFaHSBZ04HHfxJGju0PJWFzGYvxjDfeYFWlCL0+LlVuXvG+fZ2hgTUp5SsY4WwIDAQAB"
	testRSAPKCS1 = "MIGJAoGBAOveUxnn1Z4jVwvknAVp/HFgtxhnl/iBkp577Pd2RHwl2BLOt9rI78j3XDvcvsUqDEAHiE2hd7prlfuaXEVoNrL/PA5KDPmBpEjs1jr5ab6xey1gVodIFnTgcd/EkaO7Q8lYXMZi/GMN95gVaUIvT4uVW5e8b59naGBNSnlKxjhbAgMBAAE="
	testEd25519  = "ucKOsYIvaSbAxh3oAt53ENb4HQJNjadHnqYJSbLKXko="
	testEdSPKI   = "MCowBQYDK2VwAyEAucKOsYIvaSbAxh3oAt53ENb4HQJNjadHnqYJSbLKXko="
	testRSA512   = "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAMDkCAwEAAQ=="
)

var dkimValidTests = []struct {
	in       string
	keyType  string
	revoked  bool
	testing  bool
	forEmail bool
}{
	{"v=DKIM1; k=rsa; p=" + testRSASPKI, "rsa", false, false, true},
	{"p=" + testRSASPKI, "rsa", false, false, true},
	{"v=DKIM1; p=" + testRSAPKCS1, "rsa", false, false, true},
	// Long keys are split into several strings, which some tools join
	// with spaces.
	{"v=DKIM1; k=rsa; p=" + testRSASPKI[:100] + " " + testRSASPKI[100:], "rsa", false, false, true},
	{"v=DKIM1; k=rsa;\r\n\tp=" + testRSASPKI[:50] + "\r\n\t" + testRSASPKI[50:] + ";", "rsa", false, false, true},
	{"v=DKIM1; k=ed25519; p=" + testEd25519, "ed25519", false, false, true},
	{"v=DKIM1; K=RSA; p=" + testRSASPKI, "rsa", false, false, true},
	{"v=DKIM1; k=ED25519; p=" + testEd25519, "ed25519", false, false, true},
	{"v=DKIM1; p=", "rsa", true, false, true},
	{"v=DKIM1; k=rsa; t=y; p=" + testRSASPKI, "rsa", false, true, true},
	{"v=DKIM1; h=sha256; s=email; t=s:y; n=rotated 2025; p=" + testRSASPKI, "rsa", false, true, true},
	{"v=DKIM1; s=*; p=" + testRSASPKI, "rsa", false, false, true},
	{"v=DKIM1; s=other; p=" + testRSASPKI, "rsa", false, false, false},
	{"v=DKIM1; x=unknown; p=" + testRSASPKI, "rsa", false, false, true},
}

var dkimErrorTests = []errorTest{
	{"", "", "p= is missing"},
	{"v=DKIM1; k=rsa", "", "p= is missing"},
	{"v=DKIM1; p=%%%", "p", "base64"},
	{"v=DKIM1; p=" + testRSASPKI[:41], "p", "base64"},
	{"v=DKIM1; p=" + testRSASPKI[:40], "p", "truncated"},
	{"v=DKIM1; p=" + testRSASPKI[:40] + "====", "p", ""},
	{"v=DKIM1; k=dsa; p=" + testRSASPKI, "k", "rsa or ed25519"},
	{"v=DKIM2; p=" + testRSASPKI, "v", "unknown"},
	{"k=rsa; v=DKIM1; p=" + testRSASPKI, "v", "first"},
	{"v=DKIM1; k=ed25519; p=" + testEdSPKI, "p", "not SubjectPublicKeyInfo"},
	{"v=DKIM1; k=ed25519; p=" + testRSASPKI, "p", "not a valid ed25519"},
	{"v=DKIM1; k=rsa; p=" + testEd25519, "p", "not a valid rsa"},
	{"v=DKIM1; k=rsa; p=" + testEdSPKI, "p", "not RSA"},
	{"v=DKIM1; p=" + testRSA512, "p", "1024 bits"},
	{"v=DKIM1; p=a; p=b", "p", "appears twice"},
	{"v=DKIM1; p", "p", "tag=value"},
}

func TestParseDKIMKey(t *testing.T) {
	for _, tt := range dkimValidTests {
		k := mustParse(t, "ParseDKIMKey", tt.in, ParseDKIMKey)
		if k == nil {
			continue
		}
		if k.KeyType != tt.keyType || k.Revoked != tt.revoked || k.Testing() != tt.testing || k.ForEmail() != tt.forEmail {
			t.Errorf("ParseDKIMKey(%q) = type %q, revoked %v, testing %v, email %v, want %q, %v, %v, %v",
				tt.in, k.KeyType, k.Revoked, k.Testing(), k.ForEmail(), tt.keyType, tt.revoked, tt.testing, tt.forEmail)
		}
		checkDKIMKey(t, tt.in, k)
	}
}

func TestDKIMKeySameKey(t *testing.T) {
	spki, err := ParseDKIMKey("p=" + testRSASPKI)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1, err := ParseDKIMKey("p=" + testRSAPKCS1)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := spki.PublicKey()
	b, _ := pkcs1.PublicKey()
	if !a.(*rsa.PublicKey).Equal(b) {
		t.Errorf("ParseDKIMKey: SubjectPublicKeyInfo and PKCS #1 forms give different keys")
	}
	k, err := ParseDKIMKey("v=DKIM1; k=ed25519; h=sha256:sha1; s=email:*; t=y:s; n=note; p=" + testEd25519)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.HashAlgorithms, []string{"sha256", "sha1"}) || !slices.Equal(k.Services, []string{"email", "*"}) ||
		!slices.Equal(k.Flags, []string{"y", "s"}) || k.Notes != "note" {
		t.Errorf("ParseDKIMKey = %+v", k)
	}
	if pub, err := k.PublicKey(); err != nil || len(pub.(ed25519.PublicKey)) != ed25519.PublicKeySize {
		t.Errorf("ParseDKIMKey(ed25519).PublicKey() = %v, %v", pub, err)
	}
}

func TestParseDKIMKeyErrors(t *testing.T) {
	testErrors(t, "ParseDKIMKey", "dkim", dkimErrorTests, func(s string) error { _, err := ParseDKIMKey(s); return err })
}

func FuzzDKIMKey(f *testing.F) {
	for _, tt := range dkimValidTests {
		f.Add(tt.in)
	}
	addSeeds(f, dkimErrorTests)
	f.Fuzz(func(t *testing.T, s string) {
		fuzzParse(t, "ParseDKIMKey", "dkim", s, ParseDKIMKey, func(k *DKIMKey) { checkDKIMKey(t, s, k) })
	})
}

// checkDKIMKey checks that an accepted record has a usable key of its
// type, or is revoked.
func checkDKIMKey(t *testing.T, s string, k *DKIMKey) {
	t.Helper()
	pub, err := k.PublicKey()
	if k.Revoked {
		if !errors.Is(err, ErrKeyRevoked) || pub != nil {
			t.Errorf("ParseDKIMKey(%q) revoked, but PublicKey() = %v, %v", s, pub, err)
		}
		return
	}
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if k.KeyType != "rsa" || pub.N.BitLen() < 1024 {
			t.Errorf("ParseDKIMKey(%q): type %q with an RSA key of %d bits", s, k.KeyType, pub.N.BitLen())
		}
	case ed25519.PublicKey:
		if k.KeyType != "ed25519" || len(pub) != ed25519.PublicKeySize {
			t.Errorf("ParseDKIMKey(%q): type %q with an Ed25519 key of %d bytes", s, k.KeyType, len(pub))
		}
	default:
		t.Errorf("ParseDKIMKey(%q).PublicKey() = %T, %v", s, pub, err)
	}
}
