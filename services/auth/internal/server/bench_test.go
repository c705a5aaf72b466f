package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/store"
)

// Benchmarks run over a real gRPC connection on loopback with 8 client
// goroutines per CPU, and report calls/s and p50/p99 latency. They measure;
// they never fail a build.
//
//	go test -run '^$' -bench . ./internal/server/   (MariaDB too with POSTCOVE_TEST_MYSQL_DSN)

func benchBackends(b *testing.B, f func(b *testing.B, st store.Store)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) { f(b, be.open(b)) })
	}
}

// measure runs call b.N times in parallel and reports throughput and
// latency percentiles.
func measure(b *testing.B, call func(i int) error) {
	b.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			t0 := time.Now()
			if err := call(i); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
			i++
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkResolveRecipient(b *testing.B) {
	for _, cached := range []bool{true, false} {
		b.Run(fmt.Sprintf("cache=%v", cached), func(b *testing.B) {
			benchBackends(b, func(b *testing.B, st store.Store) {
				e := start(b, st, options{noCache: !cached})
				e.mustDomain(b, "example.org")
				for i := range 100 {
					e.mustUserFast(b, fmt.Sprintf("user%d@example.org", i))
				}
				e.mustAlias(b, "team@example.org", "user1@example.org", "user2@example.org", "x@remote.example")
				addrs := []string{"user7@example.org", "team@example.org", "user42+tag@example.org", "nobody@example.org", "x@remote.example"}
				measure(b, func(i int) error {
					_, err := e.auth.ResolveRecipient(context.Background(), &authv1.ResolveRecipientRequest{Address: addrs[i%len(addrs)]})
					return err
				})
			})
		})
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	benchBackends(b, func(b *testing.B, st store.Store) {
		e := start(b, st, options{})
		e.mustDomain(b, "example.org")
		e.mustUser(b, "alice@example.org", "correct horse")
		measure(b, func(int) error {
			_, err := e.auth.Authenticate(context.Background(), &authv1.AuthenticateRequest{Username: "alice@example.org", Password: "correct horse", Service: "imap", RemoteIp: "127.0.0.1"})
			return err
		})
	})
}
