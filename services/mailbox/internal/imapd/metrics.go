package imapd

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the IMAP server's Prometheus collectors. Make one per
// registry and give it to every Server of the process (the 143 server with
// STARTTLS and the 993 one with implicit TLS count together).
type Metrics struct {
	sessions prometheus.Counter
	active   prometheus.Gauge
	refused  prometheus.Counter
	logins   *prometheus.CounterVec // by result: ok, failed, locked, unavailable
	fetched  prometheus.Counter
	appended prometheus.Counter
	errors   *prometheus.CounterVec // by kind: quota, io
}

// NewMetrics registers the postcove_imap_* collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Name: "postcove_imap_" + name, Help: help}
	}
	m := &Metrics{
		sessions: prometheus.NewCounter(prometheus.CounterOpts(opts("sessions_total", "IMAP connections accepted."))),
		active:   prometheus.NewGauge(prometheus.GaugeOpts(opts("sessions_active", "IMAP connections open now."))),
		refused: prometheus.NewCounter(prometheus.CounterOpts(opts("refused_total",
			"IMAP connections refused because max_sessions were open."))),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts(opts("logins_total",
			"IMAP login attempts by result (ok, failed, locked, unavailable).")), []string{"result"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts(opts("fetched_bytes_total",
			"Message octets sent by FETCH (body sections and BINARY)."))),
		appended: prometheus.NewCounter(prometheus.CounterOpts(opts("appended_bytes_total", "Message octets stored by APPEND."))),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("store_errors_total",
			"IMAP commands that failed in the store, by kind (quota; io for temporary failures).")), []string{"kind"}),
	}
	reg.MustRegister(m.sessions, m.active, m.refused, m.logins, m.fetched, m.appended, m.errors)
	return m
}
