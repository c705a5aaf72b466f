package dnscheck

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsrecord"
)

// checkDKIM checks, for each private key under keys/DOMAIN/, that the
// record at SELECTOR._domainkey.DOMAIN publishes its public key: the MTA
// signs with the private key and receivers verify with the published one
// (RFC 6376 §3.6.2), so a mismatch fails every signature.
func (c *checker) checkDKIM() {
	if c.opts.KeysDir == "" {
		return
	}
	keys, err := dkimkey.List(c.opts.KeysDir, c.domain)
	if err != nil {
		c.add("dkim", Fail, "cannot read the DKIM keys of "+c.domain, err.Error())
		return
	}
	if len(keys) == 0 {
		dir := filepath.Join(c.opts.KeysDir, c.domain)
		c.add("dkim", Warn, "no DKIM key in "+dir+", so DKIM is not checked",
			fmt.Sprintf("Without DKIM, mail from %[1]s cannot pass DMARC when it is forwarded, and Gmail and Yahoo require it of bulk senders. "+
				"Create a key with 'mailctl dkim keygen %[1]s' and publish the record it prints. If the keys are elsewhere, point --keys at that directory.", c.domain))
		return
	}
	for _, k := range keys {
		c.checkDKIMKey(k)
	}
}

func (c *checker) checkDKIMKey(k dkimkey.Key) {
	name := dkimkey.RecordName(k.Domain, k.Selector)
	want, err := dkimkey.Record(k.Signer.Public())
	if err != nil {
		c.add("dkim", Fail, "cannot make the DKIM record of "+k.Path, err.Error())
		return
	}
	publish := "Publish the key of " + k.Path + " ('mailctl dns records " + c.domain + "' prints it too):\n" + indent(txtLine(name, want))
	txts, err := c.r.TXT(c.ctx, name)
	if c.lookupFailed("dkim", "TXT lookup of "+name, err) {
		return
	}
	switch len(txts) {
	case 0:
		c.add("dkim", Fail, "no DKIM record at "+name,
			"The MTA signs mail with "+k.Path+", but receivers cannot find the public key, so every signature with selector "+k.Selector+" fails. "+publish)
		return
	case 1:
	default:
		c.add("dkim", Fail, fmt.Sprintf("%d TXT records at %s", len(txts), name),
			"With more than one record at a selector, verifiers may pick either or none (RFC 6376 §3.6.2.2); go-msgauth refuses them all. Keep exactly one. "+
				"The records now:\n"+quoted(txts)+"\n"+publish)
		return
	}
	rec, err := dnsrecord.ParseDKIMKey(txts[0])
	if err != nil {
		c.add("dkim", Fail, "the DKIM record at "+name+" has an error: "+err.Error(),
			"Receivers cannot use the key, so every signature with selector "+k.Selector+" fails. Where:\n"+pointAt(txts[0], errPos(err))+"\n"+publish)
		return
	}
	pub, err := rec.PublicKey()
	if errors.Is(err, dnsrecord.ErrKeyRevoked) {
		c.add("dkim", Fail, "the DKIM record at "+name+" is revoked (empty p=)",
			"An empty p= withdraws the key (RFC 6376 §3.6.1), but "+k.Path+" is still there for the MTA to sign with. "+
				"If the key is retired, delete the file; otherwise "+publish)
		return
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if eq, ok := pub.(equaler); !ok || !eq.Equal(k.Signer.Public()) {
		c.add("dkim", Fail, "the key published at "+name+" is not the key in "+k.Path,
			"Receivers verify signatures with the published key, so all mail signed with selector "+k.Selector+" fails DKIM. "+
				"This happens when a key is made again but the record is not updated, or the other way round. "+publish)
		return
	}
	if !rec.ForEmail() {
		c.add("dkim", Fail, "the DKIM record at "+name+" is not for email (s= tag)",
			"The s= tag limits the key to other services (RFC 6376 §3.6.1), so receivers ignore it for mail. Remove s= or write s=email. "+publish)
		return
	}
	desc := rec.KeyType
	if rsaPub, ok := pub.(*rsa.PublicKey); ok {
		desc = fmt.Sprintf("rsa, %d bits", rsaPub.N.BitLen())
		if rsaPub.N.BitLen() < 2048 {
			c.add("dkim", Warn, fmt.Sprintf("the DKIM key of selector %s has only %d bits", k.Selector, rsaPub.N.BitLen()),
				"RFC 8301 §3.2 asks for at least 2048 bits; shorter keys can be broken. Make a new key under a new selector "+
					"('mailctl dkim keygen "+c.domain+" --selector NEW'), publish it, and retire this one.")
		}
	}
	if rec.Testing() {
		c.add("dkim", Warn, "the DKIM record at "+name+" is in testing mode (t=y)",
			"Receivers treat mail signed in testing mode as unsigned (RFC 6376 §3.6.1). Remove t=y once signing works.")
	}
	c.add("dkim", Pass, fmt.Sprintf("DKIM record at %s matches %s (%s)", name, k.Path, desc), "")
}
