// Package dkimsign signs submitted mail with DKIM (RFC 6376) using the keys
// `mailctl dkim keygen` writes under keys/<domain>/<selector>.key (package
// dkimkey): the newest selector of each algorithm, so that an Ed25519 key
// (RFC 8463) signs beside an RSA one, and a new selector takes over from
// the old one at rotation.
package dkimsign

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postcove/postcove/services/internal/address"
	"github.com/postcove/postcove/services/internal/dkimkey"
)

// signedFields are the header fields signed when present (RFC 6376
// section 5.4.1's recommendation, less the trace fields). From is
// always signed, and once more than it occurs (oversigned, section
// 8.15): a From added on the way would break the signature instead of
// being shown to the reader as the sender.
var signedFields = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "List-Unsubscribe",
	"List-Unsubscribe-Post",
}

// DefaultReload is how long loaded keys are used before the directory is
// read again: a new key (rotation) is picked up without a restart.
const DefaultReload = time.Minute

// Signer signs for every domain that has keys under its directory. It is
// safe for concurrent use.
type Signer struct {
	dir    string
	reload time.Duration

	mu    sync.Mutex // protects cache
	cache map[string]cached
}

type cached struct {
	keys   []dkimkey.Key // the ones signing: newest of each algorithm
	err    error
	loaded time.Time
}

// New returns a Signer reading keys from dir (keys/ in the seed layout).
// reload <= 0 means DefaultReload.
func New(dir string, reload time.Duration) *Signer {
	if reload <= 0 {
		reload = DefaultReload
	}
	return &Signer{dir: dir, reload: reload, cache: make(map[string]cached)}
}

// keys returns the signing keys of domain, from the cache when fresh.
func (s *Signer) keys(domain string) ([]dkimkey.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[domain]; ok && time.Since(c.loaded) < s.reload {
		return c.keys, c.err
	}
	all, err := dkimkey.List(s.dir, domain)
	// Sorted by selector: the last of each algorithm is the newest when
	// selectors are dated (dkimkey.DefaultSelector).
	var rsaKey, edKey *dkimkey.Key
	for i := range all {
		if _, ok := all[i].Signer.Public().(ed25519.PublicKey); ok {
			edKey = &all[i]
		} else {
			rsaKey = &all[i]
		}
	}
	var keys []dkimkey.Key
	for _, k := range []*dkimkey.Key{rsaKey, edKey} {
		if k != nil {
			keys = append(keys, *k)
		}
	}
	s.cache[domain] = cached{keys: keys, err: err, loaded: time.Now()}
	return keys, err
}

// Sign returns the DKIM-Signature fields (each ending in CRLF) to prepend
// to message for the domain of fromAddr, the author address: signing
// with its domain is what aligns for DMARC. A domain without keys gets no
// signature and no error. header is the message's header block, body its
// body; each is read once.
func (s *Signer) Sign(fromAddr string, header []byte, body io.Reader) ([]string, error) {
	at := strings.LastIndexByte(fromAddr, '@')
	if at < 0 {
		return nil, nil
	}
	domain, err := address.ParseDomain(fromAddr[at+1:])
	if err != nil {
		return nil, nil // nothing we could hold keys for
	}
	keys, err := s.keys(domain)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	fields := headerKeys(header)
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	for _, k := range keys {
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 k.Signer,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             fields,
		})
		if err != nil {
			closeAll(signers)
			return nil, fmt.Errorf("dkim %s: %w", k.Path, err)
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	w := io.MultiWriter(writers...)
	_, err = w.Write(header)
	if err == nil {
		_, err = io.Copy(w, body)
	}
	if err != nil {
		closeAll(signers)
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var sigs []string
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			closeAll(signers[i+1:])
			return nil, fmt.Errorf("dkim %s: %w", keys[i].Path, err)
		}
		sigs = append(sigs, sg.Signature())
	}
	return sigs, nil
}

func closeAll(signers []*dkim.Signer) {
	for _, s := range signers {
		s.Close()
	}
}

// headerKeys lists the signed fields present in header, each as often as
// it occurs, plus one more From.
func headerKeys(header []byte) []string {
	count := map[string]int{}
	for _, line := range strings.Split(string(header), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if name, _, ok := strings.Cut(line, ":"); ok {
			count[strings.ToLower(strings.TrimSpace(name))]++
		}
	}
	var keys []string
	for _, f := range signedFields {
		n := count[strings.ToLower(f)]
		if f == "From" {
			n++
		}
		for range n {
			keys = append(keys, f)
		}
	}
	return keys
}
