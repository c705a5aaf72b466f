package testlib

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/dnsclient"
)

// TestDNSServer: the server answers dnsclient the way an authoritative
// server would, and SetZone and ServFail change the answers.
func TestDNSServer(t *testing.T) {
	// Parentheses across lines, comments and a default TTL, as mailctl dns
	// records prints them.
	s := StartDNS(t, `
; the mail setup
$TTL 300
example.org. IN MX 10 mail.example.org.
s1._domainkey.example.org. IN TXT ( "v=DKIM1; k=rsa; "
                                    "p=AAAA" ) ; split
mail.example.org. IN A 192.0.2.1
`)
	r, err := dnsclient.New([]string{s.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lookups := []struct {
		name    string
		lookup  func(context.Context, string) ([]string, error)
		want    []string
		wantErr error
	}{
		{"s1._domainkey.example.org", r.TXT, []string{"v=DKIM1; k=rsa; p=AAAA"}, nil},
		{"_domainkey.example.org", r.TXT, nil, dnsclient.ErrNotFound},
		{"example.org", r.TXT, nil, dnsclient.ErrNotFound},
		{"other.example.org", r.TXT, nil, dnsclient.ErrNotFound},
	}
	for _, tt := range lookups {
		got, err := tt.lookup(ctx, tt.name)
		if !reflect.DeepEqual(got, tt.want) || !errors.Is(err, tt.wantErr) {
			t.Errorf("TXT(%s) = %q, %v; want %q, %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}

	s.SetZone(t, `example.org. 60 IN TXT "v=spf1 -all"`)
	if got, err := r.TXT(ctx, "example.org"); err != nil || !reflect.DeepEqual(got, []string{"v=spf1 -all"}) {
		t.Errorf("after SetZone, TXT(example.org) = %q, %v; want [v=spf1 -all]", got, err)
	}
	if _, err := r.MX(ctx, "example.org"); !errors.Is(err, dnsclient.ErrNotFound) {
		t.Errorf("after SetZone, MX(example.org) = %v; want %v", err, dnsclient.ErrNotFound)
	}
	s.ServFail("Example.ORG.")
	if _, err := r.TXT(ctx, "example.org"); !errors.Is(err, dnsclient.ErrTemporary) {
		t.Errorf("after ServFail, TXT(example.org) = %v; want %v", err, dnsclient.ErrTemporary)
	}
	if got := s.Queries(); got != 7 {
		t.Errorf("Queries() = %d, want 7", got)
	}
}

// TestDNSServerLongTXT: a TXT string over 255 bytes is served as several
// character-strings, as it must be on the wire.
func TestDNSServerLongTXT(t *testing.T) {
	long := strings.Repeat("0123456789", 30)
	s := StartDNS(t, `long.example.org. IN TXT "`+long+`"`)
	resp, err := dns.Exchange(new(dns.Msg).SetQuestion("long.example.org.", dns.TypeTXT), s.Addr)
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("query long.example.org TXT = %v, %v", resp, err)
	}
	got := resp.Answer[0].(*dns.TXT).Txt
	if want := []string{long[:255], long[255:]}; !reflect.DeepEqual(got, want) {
		t.Errorf("TXT strings = %q, want %q", got, want)
	}
}

// TestDNSServerAnswers checks the answer section and code the server gives,
// message by message.
func TestDNSServerAnswers(t *testing.T) {
	s := StartDNS(t, `
a.example.org. 60 IN CNAME b.example.org.
b.example.org. 60 IN A 192.0.2.1
b.example.org. 60 IN TXT "b"
dangling.example.org. 60 IN CNAME gone.example.org.
`)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		types []uint16
	}{
		{"a.example.org.", dns.TypeA, dns.RcodeSuccess, []uint16{dns.TypeCNAME, dns.TypeA}},
		{"a.example.org.", dns.TypeCNAME, dns.RcodeSuccess, []uint16{dns.TypeCNAME}},
		{"a.example.org.", dns.TypeMX, dns.RcodeSuccess, []uint16{dns.TypeCNAME}},
		{"b.example.org.", dns.TypeANY, dns.RcodeSuccess, []uint16{dns.TypeA, dns.TypeTXT}},
		{"b.example.org.", dns.TypeMX, dns.RcodeSuccess, nil},
		{"example.org.", dns.TypeA, dns.RcodeSuccess, nil},
		{"c.example.org.", dns.TypeA, dns.RcodeNameError, nil},
		{"dangling.example.org.", dns.TypeA, dns.RcodeNameError, []uint16{dns.TypeCNAME}},
	}
	for _, tt := range tests {
		q := new(dns.Msg).SetQuestion(tt.name, tt.qtype)
		resp, err := dns.Exchange(q, s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		var types []uint16
		for _, rr := range resp.Answer {
			types = append(types, rr.Header().Rrtype)
		}
		if resp.Rcode != tt.rcode || !resp.Authoritative || !reflect.DeepEqual(types, tt.types) {
			t.Errorf("query %s %s = %s %v (aa=%v); want %s %v", tt.name, dns.TypeToString[tt.qtype],
				dns.RcodeToString[resp.Rcode], types, resp.Authoritative, dns.RcodeToString[tt.rcode], tt.types)
		}
	}
}

// TestDNSServerTruncates: without EDNS0 a UDP answer stops at 512 bytes with
// TC set; over TCP it is whole.
func TestDNSServerTruncates(t *testing.T) {
	var zone strings.Builder
	for i := range 10 {
		fmt.Fprintf(&zone, "big.example.org. IN TXT \"%d%s\"\n", i, strings.Repeat("x", 100))
	}
	s := StartDNS(t, zone.String())
	for _, tt := range []struct {
		net       string
		truncated bool
	}{{"udp", true}, {"tcp", false}} {
		resp, _, err := (&dns.Client{Net: tt.net}).Exchange(new(dns.Msg).SetQuestion("big.example.org.", dns.TypeTXT), s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Truncated != tt.truncated || !tt.truncated && len(resp.Answer) != 10 {
			t.Errorf("over %s: truncated %v with %d records; want truncated %v", tt.net, resp.Truncated, len(resp.Answer), tt.truncated)
		}
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestDNSServerBadZone(t *testing.T) {
	s := StartDNS(t, "")
	for _, zone := range []string{
		"example.org. IN MX mail.example.org.",
		"example.org. IN A 192.0.2.300",
	} {
		rec := &fatalRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.SetZone(rec, zone)
		}()
		<-done
		if !strings.Contains(rec.msg, "DNS server zone") {
			t.Errorf("SetZone(%.40q) failed with %q, want a zone error", zone, rec.msg)
		}
	}
}
