package password

import "testing"

// BenchmarkHashDefault is the cost of one login with DefaultParams: Verify of
// an argon2id hash costs the same as Hash.
func BenchmarkHashDefault(b *testing.B) {
	h := New(DefaultParams())
	for b.Loop() {
		if _, err := h.Hash("correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the cost of verifying each kind of imported hash, from
// the doveadm vectors (dovecot's default costs).
func BenchmarkVerify(b *testing.B) {
	h := New(DefaultParams())
	seen := map[string]bool{}
	for _, v := range readVectors(b) {
		if seen[v.scheme] {
			continue
		}
		seen[v.scheme] = true
		b.Run(v.scheme, func(b *testing.B) {
			for b.Loop() {
				if ok, _, err := h.Verify(v.hash, v.password); !ok || err != nil {
					b.Fatalf("Verify(%q, %q) = %v, _, %v, want true, _, nil", v.hash, v.password, ok, err)
				}
			}
		})
	}
}
