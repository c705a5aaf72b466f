package verify

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

// countingResolver counts the TXT lookups that reach the DNS server.
type countingResolver struct {
	*dnsclient.Resolver
	txt atomic.Int32
}

func (c *countingResolver) TXT(ctx context.Context, name string) ([]string, error) {
	c.txt.Add(1)
	return c.Resolver.TXT(ctx, name)
}

// TestTXTCache: found records and "no such record" are answered from the
// cache until they expire; a temporary failure is asked again each time.
func TestTXTCache(t *testing.T) {
	dns := testlib.StartDNS(t, `a.example. IN TXT "v=spf1 -all"
`)
	dns.ServFail("down.example")
	r, err := dnsclient.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingResolver{Resolver: r}
	now := time.Unix(1_700_000_000, 0)
	n := netResolver{r: cr, txt: newTXTCache(func() time.Time { return now })}
	ctx := context.Background()
	lookup := func(name string, wantLookups int32) []string {
		t.Helper()
		before := cr.txt.Load()
		txts, _ := n.LookupTXT(ctx, name)
		if got := cr.txt.Load() - before; got != wantLookups {
			t.Errorf("LookupTXT(%s) at %v: %d lookups reached DNS, want %d", name, now, got, wantLookups)
		}
		return txts
	}

	txts := lookup("a.example", 1)
	if len(txts) != 1 || txts[0] != "v=spf1 -all" {
		t.Fatalf("LookupTXT(a.example) = %q", txts)
	}
	txts[0] = "changed by the caller"
	if txts := lookup("A.Example", 0); len(txts) != 1 || txts[0] != "v=spf1 -all" {
		t.Errorf("cached LookupTXT(A.Example) = %q, want the record", txts)
	}

	lookup("none.example", 1)
	_, err = n.LookupTXT(ctx, "none.example") // cached, and still "no such record"
	if de, ok := err.(*net.DNSError); !ok || !de.IsNotFound {
		t.Errorf("cached NXDOMAIN: %#v, want a *net.DNSError with IsNotFound", err)
	}

	lookup("down.example", 1)
	_, err = n.LookupTXT(ctx, "down.example")
	if de, ok := err.(*net.DNSError); !ok || !de.Temporary() {
		t.Errorf("SERVFAIL: %#v, want a temporary *net.DNSError", err)
	}
	lookup("down.example", 1) // still not cached

	now = now.Add(txtCacheTTL)
	lookup("a.example", 1)
	lookup("none.example", 1)
}
