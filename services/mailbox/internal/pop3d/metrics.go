package pop3d

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the POP3 server's Prometheus collectors. Make one per
// registry and give it to every Server of the process (the 110 server with
// STLS and the 995 one with implicit TLS count together). A nil *Metrics
// records nothing.
type Metrics struct {
	sessions  prometheus.Counter
	active    prometheus.Gauge
	logins    *prometheus.CounterVec
	retrieved prometheus.Counter
	deleted   prometheus.Counter
	panics    prometheus.Counter
}

// NewMetrics registers the postcove_pop3_* collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postcove_pop3_sessions_total",
			Help: "POP3 connections accepted.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postcove_pop3_sessions_active",
			Help: "POP3 connections open now.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_pop3_logins_total",
			Help: "POP3 login attempts by result (ok, failed, locked, unavailable, refused).",
		}, []string{"result"}),
		retrieved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postcove_pop3_retrieved_bytes_total",
			Help: "Message octets sent by RETR and TOP, with CRLF line ends, before byte-stuffing.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postcove_pop3_deleted_messages_total",
			Help: "Messages removed at QUIT (the UPDATE state).",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postcove_pop3_panics_total",
			Help: "POP3 sessions ended by a recovered panic (a bug).",
		}),
	}
	reg.MustRegister(m.sessions, m.active, m.logins, m.retrieved, m.deleted, m.panics)
	return m
}

func (m *Metrics) sessionStarted() {
	if m != nil {
		m.sessions.Inc()
		m.active.Inc()
	}
}

func (m *Metrics) sessionEnded() {
	if m != nil {
		m.active.Dec()
	}
}

func (m *Metrics) login(r loginResult) {
	if m != nil {
		m.logins.WithLabelValues(string(r)).Inc()
	}
}

func (m *Metrics) retrievedBytes(n int64) {
	if m != nil && n > 0 {
		m.retrieved.Add(float64(n))
	}
}

func (m *Metrics) deletedMessages(n int) {
	if m != nil && n > 0 {
		m.deleted.Add(float64(n))
	}
}

func (m *Metrics) panicked() {
	if m != nil {
		m.panics.Inc()
	}
}
