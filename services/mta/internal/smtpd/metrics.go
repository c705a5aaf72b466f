package smtpd

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the SMTP listeners' counters, labelled by listener
// ("inbound", "submission", "submissions"). A nil *Metrics counts nothing.
type Metrics struct {
	connections *prometheus.CounterVec
	active      *prometheus.GaugeVec
	accepted    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_mta_smtp_connections_total",
			Help: "SMTP connections accepted (sessions), by listener.",
		}, []string{"listener"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postcove_mta_smtp_connections",
			Help: "SMTP connections open now, by listener.",
		}, []string{"listener"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_mta_smtp_accepted_total",
			Help: "Messages accepted into the queue, by listener.",
		}, []string{"listener"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_mta_smtp_rejected_total",
			Help: "Commands, messages and connections refused, by listener and reason.",
		}, []string{"listener", "reason"}),
	}
	reg.MustRegister(m.connections, m.active, m.accepted, m.rejected)
	return m
}

func (m *Metrics) connOpened(listener string) {
	if m != nil {
		m.connections.WithLabelValues(listener).Inc()
		m.active.WithLabelValues(listener).Inc()
	}
}

func (m *Metrics) connClosed(listener string) {
	if m != nil {
		m.active.WithLabelValues(listener).Dec()
	}
}

func (m *Metrics) accept(listener string) {
	if m != nil {
		m.accepted.WithLabelValues(listener).Inc()
	}
}

func (m *Metrics) reject(listener, reason string) {
	if m != nil {
		m.rejected.WithLabelValues(listener, reason).Inc()
	}
}
