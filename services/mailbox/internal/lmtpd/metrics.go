package lmtpd

import "github.com/prometheus/client_golang/prometheus"

// metrics are the LMTP server's Prometheus series. Label values come from
// this package only (never from clients), so they stay few.
type metrics struct {
	sessions   prometheus.Gauge
	refused    prometheus.Counter
	recipients *prometheus.CounterVec // by result
	deliveries *prometheus.CounterVec // by result
	received   prometheus.Counter
	stored     prometheus.Counter
	duration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "postcove_lmtp_"
	byResult := []string{"result"}
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "sessions", Help: "LMTP sessions open now."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "connections_refused_total",
			Help: "Connections answered 421 because MaxConnections were open."}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "recipients_total",
			Help: "RCPT TO commands by result (accepted, unknown_user, not_local_domain, no_mailbox, alias_loop, invalid, auth_unavailable)."}, byResult),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "deliveries_total",
			Help: "Messages stored into a mailbox (result inbox or junk) or not (over_quota, too_big, disk_full, store_error, aborted, ...)."}, byResult),
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "received_bytes_total",
			Help: "Bytes of message data received, once per message."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "stored_bytes_total",
			Help: "Bytes stored, once per mailbox delivered to (trace header fields included)."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: ns + "data_seconds",
			Help:    "Time from the start of DATA to the last recipient's status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}), // 1 ms to 16 s
	}
	reg.MustRegister(m.sessions, m.refused, m.recipients, m.deliveries, m.received, m.stored, m.duration)
	return m
}
