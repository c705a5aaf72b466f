package server

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the auth service's Prometheus counters. A nil *Metrics
// records nothing.
type Metrics struct {
	loginsTotal  *prometheus.CounterVec
	resolveTotal *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		loginsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_auth_logins_total",
			Help: "Login attempts by protocol and result (ok, failed, locked).",
		}, []string{"service", "result"}),
		resolveTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postcove_auth_resolve_total",
			Help: "Recipient resolutions by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.loginsTotal, m.resolveTotal)
	return m
}

func (m *Metrics) login(service, result string) {
	if m != nil {
		m.loginsTotal.WithLabelValues(serviceLabel(service), result).Inc()
	}
}

func (m *Metrics) resolve(result string) {
	if m != nil {
		m.resolveTotal.WithLabelValues(result).Inc()
	}
}

// serviceLabel bounds the label's values: the service name comes from the
// caller, and unbounded label values would grow the registry without limit.
func serviceLabel(s string) string {
	switch s {
	case "smtp", "submission", "imap", "pop3", "lmtp", "mailctl", "unknown":
		return s
	}
	return "other"
}
