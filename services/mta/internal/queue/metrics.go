package queue

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the queue's Prometheus series.
type metrics struct {
	queued  prometheus.Counter
	result  *prometheus.CounterVec // per recipient and attempt: delivered, deferred, failed, expired
	bounces prometheus.Counter
	// delayWarnings counts "delayed" DSNs (Options.DelayWarning).
	delayWarnings prometheus.Counter

	mu     sync.Mutex // protects size and oldest
	size   int
	oldest time.Time
}

func newMetrics(reg prometheus.Registerer, q *Queue) *metrics {
	const ns = "postcove_queue_"
	m := &metrics{
		queued: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "enqueued_total",
			Help: "Messages written to the queue (DSNs included)."}),
		result: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "recipient_results_total",
			Help: "Delivery attempts per recipient by result: delivered, deferred, failed (5xx), expired (queue lifetime)."}, []string{"result"}),
		bounces: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "bounces_total",
			Help: "Failure notifications (bounces) queued for senders."}),
		delayWarnings: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "delay_warnings_total",
			Help: "Delay notifications (DSN Action: delayed) queued for senders."}),
	}
	if reg == nil {
		return m
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: ns + "messages",
		Help: "Messages in the queue at the last scan of the spool."}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return float64(m.size)
	})
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: ns + "oldest_message_age_seconds",
		Help: "Age of the oldest message in the queue at the last scan, 0 when empty."}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.oldest.IsZero() {
			return 0
		}
		return q.opts.now().Sub(m.oldest).Seconds()
	})
	reg.MustRegister(m.queued, m.result, m.bounces, m.delayWarnings, size, age)
	return m
}

// observe records a scan's result: the number of messages and the age of
// the oldest, read from the IDs (they start with the enqueue time in
// milliseconds, in hex).
func (m *metrics) observe(ids map[string]time.Time) {
	var oldest time.Time
	for id := range ids {
		head, _, _ := strings.Cut(id, "-")
		ms, err := strconv.ParseInt(head, 16, 64)
		if err != nil {
			continue
		}
		if t := time.UnixMilli(ms); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	m.mu.Lock()
	m.size, m.oldest = len(ids), oldest
	m.mu.Unlock()
}
