package verify

import (
	"strings"
	"testing"

	"github.com/postcove/postcove/services/mta/internal/policy"
)

// FuzzAuthorDomains: any From field (what a stranger writes) gives valid,
// normalized domains and no panic; so does any DKIM-Signature tag list.
func FuzzAuthorDomains(f *testing.F) {
	for _, seed := range []string{
		"Alice <alice@example.org>",
		"a@one.example, \"B, the second\" <b@two.example>",
		"=?utf-8?q?J=C3=B6rg?= <j@b\u00fccher.example>",
		"broken <a@three.example",
		"@@@..@-.@_",
		"v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=x; b=y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, from string) {
		if strings.ContainsAny(from, "\r\n") {
			return // not one header field
		}
		h := &policy.Header{}
		h.Append("From", from)
		for _, d := range authorDomains(h) {
			if !isDomainName(d) || d != strings.ToLower(d) || normalizeDomain(d) != d {
				t.Errorf("authorDomains(%q) gave %q", from, d)
			}
		}
		if s := tagValue(from, "s"); strings.ContainsAny(s, " \t;") {
			t.Errorf("tagValue(%q, s) = %q", from, s)
		}
	})
}
