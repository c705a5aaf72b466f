// Package verify judges mail arriving on port 25: SPF (RFC 7208, with
// blitiri.com.ar/go/spf), DKIM (RFC 6376) and DMARC (RFC 7489, both with
// go-msgauth), written into one Authentication-Results field (RFC 8601)
// and turned into a verdict for package smtpd.
//
// The verdicts:
//
//   - DMARC fails and the author domain's policy is p=reject (after sp and
//     pct): 550 5.7.1.
//   - The From domain or the MAIL FROM domain is one of ours, and no SPF or
//     DKIM result aligned with it passed: 550 5.7.1, whether or not the
//     domain publishes a DMARC record. Our users submit on 587; mail that
//     claims our domains from outside must prove it (DESIGN.md, invariant
//     4). Whether a domain is ours is asked of auth; auth unavailable is a
//     temporary failure (451), never a 5xx.
//   - DMARC fails with p=quarantine: accepted, filed into Junk.
//   - Anything else: accepted, with the results in the header.
//
// Temporary DNS failures (SERVFAIL, timeouts) give temperror results and
// never a 5xx. RFC 7489 leaves their handling to the receiver (section
// 6.6.2 for SPF and DKIM, 6.6.3 for the policy record): accept ("fail
// open") or answer 4xx so that the sender retries ("fail closed"). This
// package fails closed only where the failure could hide a refusal: the
// policy lookup failed and nothing passed in strict alignment (so any
// policy may apply), or the policy is reject or quarantine, or the domain
// is ours, and no aligned identifier passed but one had a temperror. The
// reply is then 451 4.7.0, and the sender retries once DNS answers.
// Otherwise (no policy, p=none, an aligned pass already) the message is
// accepted with the temperror recorded: a broken DNS zone must not hold
// back mail no policy asks us to refuse.
//
// All DNS goes through one Resolver (dnsclient in service, a loopback DNS
// server in tests).
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/mta/internal/smtpd"
)

const (
	// DefaultTimeout bounds the whole check of one message. The client
	// waits for the reply to its final dot; RFC 5321 section 4.5.3.2.6
	// gives it 10 minutes, and SPF alone deserves 20 seconds (RFC 7208
	// section 4.6.4).
	DefaultTimeout = 30 * time.Second
	// spfTimeout is RFC 7208 section 4.6.4's "at least 20 seconds".
	spfTimeout = 20 * time.Second
)

// Options configure a Verifier.
type Options struct {
	// Hostname is our authserv-id: the first word of our
	// Authentication-Results (smtpd strips fields claiming it). Required.
	Hostname string
	// Resolver does every DNS lookup. Required.
	Resolver Resolver
	// Domains tells our domains from others (the auth service).
	// Required.
	Domains Domains
	// Timeout bounds the whole check of one message; 0 is DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Verifier is smtpd's Verifier for port 25. It is safe for concurrent
// use.
type Verifier struct {
	hostname   string
	dns        netResolver
	local      *localDomains
	timeout    time.Duration
	spfTimeout time.Duration
	log        *slog.Logger
}

var _ smtpd.Verifier = (*Verifier)(nil)

// New returns a Verifier.
func New(opts Options) (*Verifier, error) {
	if opts.Hostname == "" || opts.Resolver == nil || opts.Domains == nil {
		return nil, errors.New("verify: Hostname, Resolver and Domains are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{
		hostname:   opts.Hostname,
		dns:        netResolver{r: opts.Resolver, txt: newTXTCache(time.Now)},
		local:      newLocalDomains(opts.Domains),
		timeout:    opts.Timeout,
		spfTimeout: min(spfTimeout, opts.Timeout),
		log:        opts.Logger,
	}, nil
}

// Verify checks SPF, every DKIM signature and DMARC, and judges the
// message. An error means the message could not be judged now (the body
// could not be read, auth did not answer): smtpd answers 451.
func (v *Verifier) Verify(ctx context.Context, m *smtpd.Message) (smtpd.Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	s := v.checkSPF(ctx, m.RemoteIP, m.Helo, m.Sender)
	dkims, err := v.checkDKIM(ctx, m.Header, m.Body)
	if err != nil {
		return smtpd.Verdict{}, err
	}
	var dmarcs []dmarcResult
	for _, author := range authorDomains(m.Header) {
		dmarcs = append(dmarcs, v.evalDMARC(ctx, author, s, dkims))
	}
	verdict := smtpd.Verdict{AuthResults: v.authResults(m, s, dkims, dmarcs)}
	verdict.Reject, verdict.Junk, err = v.judge(ctx, m, s, dkims, dmarcs)
	if err != nil {
		return smtpd.Verdict{}, err
	}
	v.log.Debug("verified", "authentication_results", verdict.AuthResults, "junk", verdict.Junk, "reject", verdict.Reject != nil)
	return verdict, nil
}

// judge turns the results into a refusal, or a Junk mark. The strictest
// outcome wins: a definite refusal, then a deferral, then quarantine.
func (v *Verifier) judge(ctx context.Context, m *smtpd.Message, s spfResult, dkims []dkimResult, dmarcs []dmarcResult) (*smtp.SMTPError, bool, error) {
	for _, d := range dmarcs {
		if d.value == authres.ResultFail && d.policy == dmarc.PolicyReject {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
				Message: fmt.Sprintf("Message rejected: it fails the DMARC policy of %s (p=reject)", d.domain)}, false, nil
		}
	}

	// Our own domains, claimed in From or in MAIL FROM, need an aligned
	// pass in any case (relaxed alignment, DMARC's default).
	claimed := make([]string, 0, len(dmarcs)+1)
	for _, d := range dmarcs {
		claimed = append(claimed, d.domain)
	}
	if !s.helo && s.domain != "" {
		claimed = append(claimed, s.domain)
	}
	unsure := ""
	for _, domain := range claimed {
		a := alignedResult(domain, dmarc.AlignmentRelaxed, dmarc.AlignmentRelaxed, s, dkims)
		if a == alignedPass {
			continue
		}
		local, err := v.local.isLocal(ctx, domain)
		if err != nil {
			return nil, false, err
		}
		if !local {
			continue
		}
		if a == alignedUnsure {
			unsure = domain
			continue
		}
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("Message rejected: %s is a domain of this server, and neither SPF nor DKIM authenticates it", domain)}, false, nil
	}

	for _, d := range dmarcs {
		if d.unsure {
			unsure = d.domain
		}
	}
	if unsure != "" {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: fmt.Sprintf("Temporary DNS failure authenticating %s, try again later", unsure)}, false, nil
	}
	for _, d := range dmarcs {
		if d.value == authres.ResultFail && d.policy == dmarc.PolicyQuarantine {
			return nil, true, nil
		}
	}
	return nil, false, nil
}

// authResults writes the Authentication-Results value (RFC 8601): our
// authserv-id, then spf, each dkim signature (or dkim=none), and dmarc
// for each author domain, one result a line.
func (v *Verifier) authResults(m *smtpd.Message, s spfResult, dkims []dkimResult, dmarcs []dmarcResult) string {
	spfRes := &authres.SPFResult{Value: s.value}
	switch {
	case s.helo:
		spfRes.Helo = s.domain // normalized: the client's HELO may hold anything
	case headerSafe(m.Sender):
		spfRes.From = m.Sender
	default:
		spfRes.From = s.domain
	}
	results := []authres.Result{spfRes}
	if len(dkims) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range dkims {
		// go-msgauth's DKIMResult has no header.s (RFC 8601 section
		// 2.7.1 lists it): a generic result carries both.
		results = append(results, &authres.GenericResult{Method: "dkim", Value: d.value,
			Params: map[string]string{"header.d": d.domain, "header.s": d.selector}})
	}
	for _, d := range dmarcs {
		results = append(results, &authres.DMARCResult{Value: d.value, From: d.domain})
	}
	var b strings.Builder
	b.WriteString(v.hostname)
	for _, r := range results {
		// Format writes "id; method=value params"; each result is
		// folded onto a line of its own to keep lines short (RFC 5322
		// section 2.1.1).
		one := authres.Format("", []authres.Result{r})
		b.WriteString(";\r\n\t")
		b.WriteString(strings.TrimSpace(strings.TrimPrefix(one, ";")))
	}
	return b.String()
}

// headerSafe reports whether s can go into a header field as is: no
// control characters.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
