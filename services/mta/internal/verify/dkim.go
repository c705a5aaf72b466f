package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/mta/internal/policy"
)

// MaxSignatures is how many DKIM signatures of one message are verified;
// the rest are ignored. Each costs a DNS lookup and a pass over the body,
// and RFC 6376 section 8.4 warns of messages carrying many to waste the
// verifier's time. Real mail has one to three.
const MaxSignatures = 8

// dkimResult is the verification of one DKIM-Signature field.
type dkimResult struct {
	value    authres.ResultValue
	domain   string // d=, normalized; "" when the signature has none
	selector string // s=, as written; "" when absent or unusable in a header
}

// checkDKIM verifies every DKIM signature of the message (RFC 6376
// section 6), the first MaxSignatures of them, reading the body once.
// The error is not a verification result: the body could not be read.
func (v *Verifier) checkDKIM(ctx context.Context, h *policy.Header, body io.Reader) ([]dkimResult, error) {
	sigs := h.Values("DKIM-Signature")
	if len(sigs) == 0 {
		return nil, nil
	}
	sigs = sigs[:min(len(sigs), MaxSignatures)]
	msg := io.MultiReader(bytes.NewReader(h.Bytes()), body)
	verifs, err := dkim.VerifyWithOptions(msg, &dkim.VerifyOptions{
		LookupTXT:        v.dns.txtFunc(ctx),
		MaxVerifications: MaxSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	out := make([]dkimResult, len(verifs))
	for i, vf := range verifs {
		r := dkimResult{value: authres.ResultPass, domain: normalizeDomain(vf.Domain)}
		// One verification per signature field, in header order, as
		// h.Values lists them; the library reports no selector.
		if len(verifs) == len(sigs) {
			if s := tagValue(sigs[i], "s"); validLabels(s) {
				r.selector = s
			}
		}
		switch {
		case vf.Err == nil:
		case dkim.IsTempFail(vf.Err):
			// The key lookup failed temporarily (RFC 6376 section 6.1.2).
			r.value = authres.ResultTempError
		case dkim.IsPermFail(vf.Err):
			// Malformed signature, no key, unacceptable algorithm
			// (RFC 8601 section 2.7.1: permerror).
			r.value = authres.ResultPermError
		default:
			// The body hash or the signature does not verify.
			r.value = authres.ResultFail
		}
		if vf.Err != nil {
			v.log.Debug("dkim", "d", r.domain, "s", r.selector, "result", r.value, "detail", vf.Err)
		}
		out[i] = r
	}
	return out, nil
}

// tagValue returns the value of tag name in a DKIM tag list (RFC 6376
// section 3.2), white space removed; "" when absent.
func tagValue(list, name string) string {
	for _, spec := range strings.Split(list, ";") {
		k, val, ok := strings.Cut(spec, "=")
		if ok && strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(val), "")
		}
	}
	return ""
}
