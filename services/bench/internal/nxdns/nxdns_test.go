package nxdns_test

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/bench/internal/nxdns"
)

func TestNXDOMAIN(t *testing.T) {
	s, err := nxdns.Start()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		net   string
		name  string
		qtype uint16
	}{
		{"udp", "example.net.", dns.TypeTXT},
		{"tcp", "_dmarc.example.net.", dns.TypeTXT},
		{"udp", "1.0.0.127.in-addr.arpa.", dns.TypePTR},
	} {
		q := new(dns.Msg)
		q.SetQuestion(tt.name, tt.qtype)
		c := &dns.Client{Net: tt.net}
		r, _, err := c.Exchange(q, s.Addr())
		if err != nil {
			t.Fatalf("%s %s: %v", tt.net, tt.name, err)
		}
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || r.Id != q.Id {
			t.Errorf("%s %s: rcode %s, %d answers, id %d; want NXDOMAIN, none, id %d", tt.net, tt.name, dns.RcodeToString[r.Rcode], len(r.Answer), r.Id, q.Id)
		}
	}
	if got := s.Queries(); got != 3 {
		t.Errorf("Queries() = %d, want 3", got)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop() = %v", err)
	}
}
