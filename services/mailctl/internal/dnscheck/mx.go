package dnscheck

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// maxMXHosts bounds the MX hosts looked at; real domains have one to five.
const maxMXHosts = 10

// checkMX checks that the domain has MX records and returns the hosts,
// best first.
func (c *checker) checkMX() []string {
	d := c.domain
	mxs, err := c.r.MX(c.ctx, d)
	if c.lookupFailed("mx", "MX lookup of "+d, err) {
		return nil
	}
	if len(mxs) == 0 {
		detail := fmt.Sprintf("Senders look up the MX record to know which server takes mail for %s (RFC 5321 §5.1). "+
			"Without one, some try the domain's own address and many give up. Publish one naming the mail host "+
			"('mailctl dns records %s --ip ADDR' prints it):\n%s", d, d, indent(d+". 3600 IN MX 10 mail."+d+"."))
		if err != nil {
			detail += "\nDNS said: " + err.Error()
		}
		c.add("mx", Fail, "no MX record for "+d, detail)
		return nil
	}
	var hosts, shown []string
	null := false
	for _, mx := range mxs {
		if mx.Host == "." {
			null = true
			continue
		}
		hosts = append(hosts, mx.Host)
		shown = append(shown, fmt.Sprintf("%s (preference %d)", mx.Host, mx.Pref))
	}
	switch {
	case null && len(hosts) == 0:
		c.add("mx", Fail, d+" has a null MX: it declares that it accepts no mail",
			fmt.Sprintf("An MX record of \"0 .\" (RFC 7505) tells senders to bounce mail for %s at once. "+
				"Replace it with the mail host:\n%s", d, indent(d+". 3600 IN MX 10 mail."+d+".")))
		return nil
	case null:
		c.add("mx", Warn, d+" has a null MX beside real ones",
			"A null MX (\"0 .\", RFC 7505) must be the only MX record; next to others, senders may bounce mail or use the others. Delete the null MX.")
	default:
		c.add("mx", Pass, "mail for "+d+" goes to "+strings.Join(shown, ", "), "")
	}
	if len(hosts) > maxMXHosts {
		hosts = hosts[:maxMXHosts]
	}
	return hosts
}

// checkMXHosts checks that each MX host has an address and is not an
// alias, and returns their addresses.
func (c *checker) checkMXHosts(hosts []string) []netip.Addr {
	var all []netip.Addr
	for _, h := range hosts {
		ips, err := c.r.IPs(c.ctx, h)
		if c.lookupFailed("mx-host", "address lookup of MX host "+h, err) {
			continue
		}
		if len(ips) == 0 {
			c.add("mx-host", Fail, "MX host "+h+" has no address (A or AAAA)",
				fmt.Sprintf("Senders cannot connect to a host without an address, so mail for %s waits in their queues and bounces after days. "+
					"Publish the address of the mail server:\n%s", c.domain, indent(h+". 3600 IN A 192.0.2.1   (your server's public IPv4 address)")))
			continue
		}
		if target, err := c.r.CNAME(c.ctx, h); err == nil {
			c.add("mx-host", Warn, fmt.Sprintf("MX host %s is an alias (CNAME to %s)", h, target),
				fmt.Sprintf("An MX must name a host with its own A/AAAA records, not an alias (RFC 2181 §10.3, RFC 5321 §5.1); "+
					"most senders cope, some refuse. Point the MX at %s, or replace the CNAME at %s with A/AAAA records.", target, h))
		} else if c.lookupFailed("mx-host", "CNAME lookup of MX host "+h, err) {
			continue
		}
		c.add("mx-host", Pass, fmt.Sprintf("MX host %s has address %s", h, joinAddrs(ips)), "")
		for _, ip := range ips {
			if !slices.Contains(all, ip) {
				all = append(all, ip)
			}
		}
	}
	return all
}

// checkPTR checks forward-confirmed reverse DNS of each address: its PTR
// names a host whose addresses include it. Receivers check this on every
// connection (RFC 8601 §3 "iprev"), and large providers refuse mail from
// addresses that fail it.
func (c *checker) checkPTR(ips []netip.Addr) {
	for _, ip := range ips {
		names, err := c.r.PTR(c.ctx, ip)
		if c.lookupFailed("ptr", "reverse DNS (PTR) lookup of "+ip.String(), err) {
			continue
		}
		if len(names) == 0 {
			c.add("ptr", Fail, "no reverse DNS (PTR) for "+ip.String(),
				fmt.Sprintf("Receivers look up the name of the address mail comes from, and Gmail, Outlook and others refuse or file as spam mail from an address without one. "+
					"The PTR record is not in your zone: set it in the control panel of whoever provides %s (often called \"reverse DNS\" or \"rDNS\"), "+
					"to the mail host's name, mail.%s say, whose A/AAAA record points back to %s.", ip, c.domain, ip))
			continue
		}
		c.checkForward(ip, names)
	}
}

// checkForward checks that one of the PTR names of ip resolves back to it.
func (c *checker) checkForward(ip netip.Addr, names []string) {
	var seen []string
	for _, name := range names {
		back, err := c.r.IPs(c.ctx, name)
		if c.lookupFailed("ptr", "address lookup of "+name+" (the PTR of "+ip.String()+")", err) {
			return
		}
		if slices.Contains(back, ip) || slices.Contains(back, ip.Unmap()) {
			c.add("ptr", Pass, fmt.Sprintf("reverse DNS of %s is %s, which points back to it", ip, name),
				fmt.Sprintf("Let the server greet other servers with this name (HELO/EHLO %s), as receivers compare the two.", name))
			return
		}
		if len(back) == 0 {
			seen = append(seen, name+" has no address")
		} else {
			seen = append(seen, fmt.Sprintf("%s points to %s", name, joinAddrs(back)))
		}
	}
	record := "A"
	if ip.Is6() && !ip.Is4In6() {
		record = "AAAA"
	}
	c.add("ptr", Fail, fmt.Sprintf("reverse DNS of %s is %s, which does not point back to it", ip, strings.Join(names, ", ")),
		fmt.Sprintf("Receivers accept a reverse DNS name only when it is forward-confirmed: the name's own address must be the one mail comes from, "+
			"or anyone could claim any name. Here %s. Either publish\n%s\nor have the provider of %s set the PTR to a name that points to %s, such as the MX host.",
			strings.Join(seen, "; "), indent(fmt.Sprintf("%s. 3600 IN %s %s", names[0], record, ip.Unmap())), ip, ip))
}
