package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Leader holds the metrics of leader election (package leader). They exist
// only with leader election configured: [Metrics.Leader] adds them.
type Leader struct {
	leading   prometheus.Gauge
	changes   prometheus.Counter
	forwarded *prometheus.CounterVec
}

// Leader registers the leader election metrics on m's registry and returns
// them; it implements leader.Observer and admin.ForwardObserver. Call it
// once.
func (m *Metrics) Leader() *Leader {
	l := &Leader{
		leading: prometheus.NewGauge(gauge("leader",
			"1 while this instance holds the leader election lease and runs (connects, syncs), else 0 (standby).")),
		changes: prometheus.NewCounter(counter("leader_changes_total",
			"Lease holders this instance has seen take the leader election lease, itself included; the first one seen counts.")),
		forwarded: prometheus.NewCounterVec(counter("forwarded_requests_total",
			"Admin API calls this instance, on standby, forwarded to the leader, by route and the leader's HTTP status code "+
				"(error: the leader was not reached, and the caller got 503)."), []string{"route", "code"}),
	}
	m.registry.MustRegister(l.leading, l.changes, l.forwarded)
	return l
}

// Leading implements leader.Observer.
func (l *Leader) Leading(leading bool) {
	if leading {
		l.leading.Set(1)
		return
	}
	l.leading.Set(0)
}

// NewLeader implements leader.Observer.
func (l *Leader) NewLeader(string) { l.changes.Inc() }

// ForwardDone implements admin.ForwardObserver.
func (l *Leader) ForwardDone(route string, code int) {
	c := "error"
	if code != 0 {
		c = strconv.Itoa(code)
	}
	l.forwarded.WithLabelValues(route, c).Inc()
}
