package metrics

import "github.com/prometheus/client_golang/prometheus"

// Leader holds the metrics of leader election (package leader). They exist
// only with leader election configured: [Metrics.Leader] adds them.
type Leader struct {
	leading prometheus.Gauge
	changes prometheus.Counter
}

// Leader registers the leader election metrics on m's registry and returns
// them; it implements leader.Observer. Call it once.
func (m *Metrics) Leader() *Leader {
	l := &Leader{
		leading: prometheus.NewGauge(gauge("leader",
			"1 while this instance holds the leader election lease and runs (connects, syncs), else 0 (standby).")),
		changes: prometheus.NewCounter(counter("leader_changes_total",
			"Lease holders this instance has seen take the leader election lease, itself included; the first one seen counts.")),
	}
	m.registry.MustRegister(l.leading, l.changes)
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
