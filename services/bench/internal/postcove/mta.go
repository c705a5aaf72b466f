package postcove

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/postcove/postcove/services/bench/internal/proc"
)

// MTAOptions configure StartMTA.
type MTAOptions struct {
	Bin string // the mta binary
	// Dir holds its log, mta.log, and its queue, queue/.
	Dir      string
	AuthAddr string // the auth service's gRPC address
	LMTPAddr string // the mailbox service's LMTP address
	// DNSAddr is the resolver (host:port). A benchmark's recipients are
	// all local, so only checks of the client and the sender ask it; it
	// must be a server on loopback (the benchmark's own), never the
	// machine's resolver.
	DNSAddr string
	// MaxConnectionsPerIP is limits.max_connections_per_ip; 0 leaves the
	// service's default (20), which a benchmark's one client address
	// running more connections would hit.
	MaxConnectionsPerIP int
}

// MTA is a running mta service.
type MTA struct {
	proc     *proc.Process
	smtpAddr string
	queueDir string
}

// StartMTA starts the mta service with its inbound SMTP listener (the
// port-25 role) on a free loopback port, submission off, local delivery
// to opts.LMTPAddr, its queue in opts.Dir/queue, and waits until it is
// healthy (auth reachable) and accepts SMTP connections. Everything else
// is the service's default: the benchmark measures it as it ships.
func StartMTA(ctx context.Context, opts MTAOptions) (*MTA, error) {
	if opts.DNSAddr == "" {
		return nil, errors.New("postcove mta: no DNS server (the benchmark's own, on loopback)")
	}
	var addrs [2]string // SMTP, gRPC
	for i := range addrs {
		var err error
		if addrs[i], err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	m := &MTA{smtpAddr: addrs[0], queueDir: filepath.Join(opts.Dir, "queue")}
	if err := os.MkdirAll(m.queueDir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(opts.Dir, "mta.log")
	vars := []string{
		"HOSTNAME=mta.bench.localhost",
		"LISTEN_SMTP=" + addrs[0],
		"LISTEN_SUBMISSION=",
		"LISTEN_SUBMISSIONS=",
		"LISTEN_GRPC=" + addrs[1],
		"LISTEN_METRICS=",
		"AUTH_ADDR=" + opts.AuthAddr,
		"QUEUE_DIR=" + m.queueDir,
		"LMTP_ADDRS=" + opts.LMTPAddr,
		"DNS_RESOLVER=" + opts.DNSAddr,
		"DKIM_KEYS_DIR=",
	}
	if opts.MaxConnectionsPerIP > 0 {
		vars = append(vars, "LIMITS_MAX_CONNECTIONS_PER_IP="+strconv.Itoa(opts.MaxConnectionsPerIP))
	}
	p, err := startLogged("postcove mta", opts.Bin, logPath, "POSTCOVE_MTA_", vars...)
	if err != nil {
		return nil, err
	}
	m.proc = p
	if err := waitHealthy(ctx, p, addrs[1]); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mta did not start: %w; log: %s", err, logPath), m.Stop())
	}
	if err := waitListening(ctx, p, m.smtpAddr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mta SMTP: %w; log: %s", err, logPath), m.Stop())
	}
	return m, nil
}

// SMTPAddr is the inbound SMTP listener's address.
func (m *MTA) SMTPAddr() string { return m.smtpAddr }

// QueueDir is the spool directory.
func (m *MTA) QueueDir() string { return m.queueDir }

// Pid is the mta process's pid.
func (m *MTA) Pid() int { return m.proc.Pid() }

// Stop stops the service; it finishes the deliveries in flight first.
func (m *MTA) Stop() error { return m.proc.Stop(stopGrace) }
