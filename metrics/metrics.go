// Package metrics defines roster-sidecar's Prometheus metrics.
//
// It exists so that one registry, created by the binary, is shared by
// component, rosterhttp and admin without any of them importing Prometheus:
// each of those packages declares a small observer interface for what it
// measures, and [Metrics] implements all of them. The registry is the
// binary's own, not Prometheus' global default, so nothing else can add to
// it by accident; it carries the Go runtime and process collectors too.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

const namespace = "roster_sidecar"

// refreshRoutePrefix selects the admin routes counted as refresh requests.
const refreshRoutePrefix = "/roster_admin/refresh"

// Metrics holds every metric of the sidecar on its own registry. Its methods
// implement admin.Observer, component.ConnObserver,
// rostersync.SyncObserver, rostersync.LoginObserver and rosterhttp.Observer; they are safe for
// concurrent use and never block.
type Metrics struct {
	registry *prometheus.Registry

	refreshRequests *prometheus.CounterVec
	refreshDuration *prometheus.HistogramVec
	userSyncs       *prometheus.CounterVec
	syncDuration    prometheus.Histogram
	itemsChanged    *prometheus.CounterVec
	skipped         prometheus.Counter
	probes          *prometheus.CounterVec
	iqDuration      *prometheus.HistogramVec
	backendDuration *prometheus.HistogramVec
	conditional     *prometheus.CounterVec
	serverReads     *prometheus.CounterVec
	connected       prometheus.Gauge
	privilege       *prometheus.GaugeVec
	syncsInFlight   prometheus.Gauge
	reconnects      prometheus.Counter
	logins          *prometheus.CounterVec
	onlineUsers     prometheus.Gauge

	mu      sync.Mutex
	domains map[string]struct{} // domains with a privilege gauge
}

// Bucket sets, in seconds.
var (
	refreshBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	syncBuckets    = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 120}
	iqBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15}
)

// New creates the metrics and a registry holding them and the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		domains:  map[string]struct{}{},
		refreshRequests: prometheus.NewCounterVec(counter("refresh_requests_total",
			"Refresh requests answered by the admin API, by route and HTTP status code."), []string{"route", "code"}),
		refreshDuration: prometheus.NewHistogramVec(histogram("refresh_request_duration_seconds",
			"Time to answer a refresh request, by route.", refreshBuckets), []string{"route"}),
		userSyncs: prometheus.NewCounterVec(counter("user_syncs_total",
			"Syncs of one user's roster, by user domain and result (ok or error). Requests that join a running or queued sync share it and are counted once."),
			[]string{"domain", "result"}),
		syncDuration: prometheus.NewHistogram(histogram("user_sync_duration_seconds",
			"Time of one user's sync: backend fetch, roster read and writes.", syncBuckets)),
		itemsChanged: prometheus.NewCounterVec(counter("roster_items_changed_total",
			"Roster items written on the XMPP server, by operation (added, updated, removed)."), []string{"op"}),
		skipped: prometheus.NewCounter(counter("skipped_contacts_total",
			"Backend contacts not applied because they were invalid (bad JID, the user itself, duplicates).")),
		probes: prometheus.NewCounterVec(counter("presence_probes_total",
			"Presence probes sent (ejabberd API mode) for contacts whose roster item gained a subscription \"to\", by outcome (sent, failed)."),
			[]string{"outcome"}),
		iqDuration: prometheus.NewHistogramVec(histogram("iq_duration_seconds",
			"IQ round trips to the XMPP server, by type (get, set, ping, disco, batch) and outcome (result, error, timeout, disconnected, cancelled).", iqBuckets),
			[]string{"type", "outcome"}),
		backendDuration: prometheus.NewHistogramVec(histogram("backend_request_duration_seconds",
			"Roster fetches from the backend, body included, by status class (2xx, 4xx, 5xx ...; error when no answer was read).", prometheus.DefBuckets),
			[]string{"class"}),
		conditional: prometheus.NewCounterVec(counter("backend_conditional_fetches_total",
			"Roster fetches that sent the validators of the user's last answer (If-None-Match, If-Modified-Since), by outcome: "+
				"not_modified (304), modified (200) or error."), []string{"outcome"}),
		serverReads: prometheus.NewCounterVec(counter("server_roster_reads_total",
			"How syncs read the user's roster on the XMPP server: full (the whole roster), unchanged (a versioned read, XEP-0237, "+
				"found it unchanged since the last sync) or skipped (the backend answered 304 within sync.reconcile_interval of the last full read)."),
			[]string{"read"}),
		connected: prometheus.NewGauge(gauge("xmpp_connected",
			"1 while the component is connected to the XMPP server, else 0.")),
		privilege: prometheus.NewGaugeVec(gauge("roster_privilege_granted",
			"1 while the server grants roster get and set for the domain on the current connection, else 0."), []string{"domain"}),
		syncsInFlight: prometheus.NewGauge(gauge("syncs_in_flight", "User syncs running now.")),
		reconnects: prometheus.NewCounter(counter("xmpp_reconnects_total",
			"Connection attempts to the XMPP server after the first one.")),
		logins: prometheus.NewCounterVec(counter("login_refreshes_total",
			"Logins (new sessions seen in forwarded presence) by outcome: queued, recent (synced less than sync.login_min_interval ago), "+
				"dropped (queue full; queued again when it has room), ok or error (the refresh ran)."), []string{"outcome"}),
		onlineUsers: prometheus.NewGauge(gauge("online_users",
			"Users with a session online, as seen in the presence the server forwards (login refresh only).")),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.refreshRequests, m.refreshDuration, m.userSyncs, m.syncDuration, m.itemsChanged, m.skipped, m.probes,
		m.iqDuration, m.backendDuration, m.conditional, m.serverReads, m.connected, m.privilege, m.syncsInFlight, m.reconnects, m.logins, m.onlineUsers,
	)
	for _, o := range rostersync.LoginOutcomes {
		m.logins.WithLabelValues(o)
	}
	// Series that exist from the start, so that rates work from zero
	// (those of each domain: ServeDomains).
	for _, op := range []string{"added", "updated", "removed"} {
		m.itemsChanged.WithLabelValues(op)
	}
	for _, o := range []string{"sent", "failed"} {
		m.probes.WithLabelValues(o)
	}
	for _, o := range []string{rosterhttp.ConditionalNotModified, rosterhttp.ConditionalModified, rosterhttp.ConditionalError} {
		m.conditional.WithLabelValues(o)
	}
	for _, r := range []string{rostersync.ReadFull, rostersync.ReadUnchanged, rostersync.ReadSkipped} {
		m.serverReads.WithLabelValues(r)
	}
	return m
}

func counter(name, help string) prometheus.CounterOpts {
	return prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}
}

func gauge(name, help string) prometheus.GaugeOpts {
	return prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}
}

func histogram(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// ObserveRequest implements admin.Observer: refresh routes only, by their
// route pattern (bounded cardinality).
func (m *Metrics) ObserveRequest(_, route string, code int, d time.Duration) {
	if !strings.HasPrefix(route, refreshRoutePrefix) {
		return
	}
	m.refreshRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.refreshDuration.WithLabelValues(route).Observe(d.Seconds())
}

// ServeDomains makes the per-domain series of the user domains served
// exist from the start: the syncs at zero, and the privilege gauge at 0
// until the server grants it (so that a domain never granted shows).
func (m *Metrics) ServeDomains(domains ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range domains {
		for _, r := range []string{"ok", "error"} {
			m.userSyncs.WithLabelValues(d, r)
		}
		if _, ok := m.domains[d]; !ok {
			m.domains[d] = struct{}{}
			m.privilege.WithLabelValues(d).Set(0)
		}
	}
}

// SyncStarted implements rostersync.SyncObserver.
func (m *Metrics) SyncStarted() { m.syncsInFlight.Inc() }

// SyncEnded implements rostersync.SyncObserver.
func (m *Metrics) SyncEnded(res rostersync.Result, d time.Duration) {
	m.syncsInFlight.Dec()
	result := "ok"
	if res.Err != nil {
		result = "error"
	}
	m.userSyncs.WithLabelValues(res.Domain, result).Inc()
	m.syncDuration.Observe(d.Seconds())
	m.itemsChanged.WithLabelValues("added").Add(float64(res.Added))
	m.itemsChanged.WithLabelValues("updated").Add(float64(res.Updated))
	m.itemsChanged.WithLabelValues("removed").Add(float64(res.Removed))
	m.skipped.Add(float64(len(res.Skipped)))
	m.probes.WithLabelValues("sent").Add(float64(res.Probed))
	m.probes.WithLabelValues("failed").Add(float64(res.ProbesFailed))
	if res.Read != "" {
		m.serverReads.WithLabelValues(res.Read).Inc()
	}
}

// IQDone implements component.ConnObserver.
func (m *Metrics) IQDone(kind, outcome string, d time.Duration) {
	m.iqDuration.WithLabelValues(kind, outcome).Observe(d.Seconds())
}

// LinkChanged implements component.ConnObserver. A lost link loses its
// privileges too.
func (m *Metrics) LinkChanged(up bool) {
	if up {
		m.connected.Set(1)
		return
	}
	m.connected.Set(0)
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := range m.domains {
		m.privilege.WithLabelValues(d).Set(0)
	}
}

// LoginRefresh implements rostersync.LoginObserver.
func (m *Metrics) LoginRefresh(outcome string) { m.logins.WithLabelValues(outcome).Inc() }

// OnlineUsers implements rostersync.LoginObserver.
func (m *Metrics) OnlineUsers(n int) { m.onlineUsers.Set(float64(n)) }

// Reconnecting implements component.ConnObserver.
func (m *Metrics) Reconnecting() { m.reconnects.Inc() }

// Granted implements component.ConnObserver.
func (m *Metrics) Granted(domain string, rosterReadWrite bool) {
	v := 0.0
	if rosterReadWrite {
		v = 1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.domains[domain] = struct{}{}
	m.privilege.WithLabelValues(domain).Set(v)
}

// FetchDone implements rosterhttp.Observer.
func (m *Metrics) FetchDone(class string, d time.Duration) {
	m.backendDuration.WithLabelValues(class).Observe(d.Seconds())
}

// ConditionalFetch implements rosterhttp.Observer.
func (m *Metrics) ConditionalFetch(outcome string) {
	m.conditional.WithLabelValues(outcome).Inc()
}
