package monitoring

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"roster-sidecar/metrics"
	"roster-sidecar/rostersync"
)

// exposed returns the names of the series roster-sidecar's /metrics serves
// (histograms as their _bucket, _sum and _count series) and the families of
// its own metrics (roster_sidecar_*), with every observer method called
// once so that the labelled metrics have series, and the leader election
// metrics registered.
func exposed(t *testing.T) (series map[string]bool, own []string) {
	t.Helper()
	m := metrics.New()
	l := m.Leader()
	d := 10 * time.Millisecond
	m.ObserveRequest(http.MethodPost, "/roster_admin/refresh", http.StatusOK, d)
	m.SyncStarted()
	m.SyncEnded(rostersync.Result{User: "alice", Added: 1}, d)
	m.IQDone("set", "result", d)
	m.FetchDone("2xx", d)
	m.LinkChanged(true)
	m.Granted("example.com", true)
	m.Reconnecting()
	m.LoginRefresh(rostersync.LoginQueued)
	m.OnlineUsers(1)
	l.Leading(true)
	l.NewLeader("pod-a")
	l.ForwardDone("/roster_admin/refresh", http.StatusOK)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	series = map[string]bool{}
	sc := bufio.NewScanner(rec.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		name, typ := f[2], f[3]
		switch typ {
		case "histogram":
			series[name+"_bucket"], series[name+"_sum"], series[name+"_count"] = true, true, true
		case "summary":
			series[name], series[name+"_sum"], series[name+"_count"] = true, true, true
		default:
			series[name] = true
		}
		if strings.HasPrefix(name, "roster_sidecar_") {
			own = append(own, name)
		}
	}
	if len(own) == 0 {
		t.Fatal("no roster_sidecar_* metric on /metrics")
	}
	return series, own
}

// metricName matches the names of roster-sidecar's metrics and of the Go
// and process collectors in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:roster_sidecar|process|go)_[a-z0-9_]+\b`)

// checkNames fails t for every metric named in expr that /metrics does not
// serve, and returns the names.
func checkNames(t *testing.T, where, expr string, series map[string]bool) []string {
	t.Helper()
	names := metricName.FindAllString(expr, -1)
	for _, n := range names {
		if !series[n] {
			t.Errorf("%s: %s is not a metric roster-sidecar exports (see metrics/): %s", where, n, expr)
		}
	}
	return names
}

type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// TestDashboard loads dashboard.json as Grafana would read it: panels with
// unique ids on the 24-column grid, each querying the data source chosen
// in the dashboard's variable, every query naming metrics roster-sidecar
// exports, and every roster_sidecar_* metric shown somewhere.
func TestDashboard(t *testing.T) {
	series, own := exposed(t)
	raw, err := os.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, uid %q, schemaVersion %d", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]bool{}
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			for _, n := range checkNames(t, "variable "+v.Name, v.Definition, series) {
				used[n] = true
			}
		}
	}
	for _, v := range []string{"datasource", "job", "instance"} {
		if !vars[v] {
			t.Errorf("no dashboard variable %s", v)
		}
	}
	if len(d.Panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := "panel " + p.Title
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id %d missing or not unique", where, p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("%s: gridPos %+v off the 24-column grid", where, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource must be the dashboard variable ${datasource}", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("%s: a query without expr or refId", where)
			}
			if !strings.Contains(tg.Expr, `job="$job"`) {
				t.Errorf("%s: query not restricted to the chosen job: %s", where, tg.Expr)
			}
			for _, n := range checkNames(t, where, tg.Expr, series) {
				used[n] = true
			}
		}
	}
	for _, f := range own {
		if !used[f] && !used[f+"_bucket"] && !used[f+"_count"] {
			t.Errorf("%s is on no panel of dashboard.json: add it", f)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlerts checks alerts.yaml beyond promtool: the alerts operators need
// exist, each has a severity, a summary and a description, and every
// metric the rules and their unit tests name is one roster-sidecar exports.
func TestAlerts(t *testing.T) {
	series, _ := exposed(t)
	raw, err := os.ReadFile("alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule that is not an alert (%q)", g.Name, r.Record)
				continue
			}
			if slices.Contains(alerts, r.Alert) {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts = append(alerts, r.Alert)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
			checkNames(t, "alert "+r.Alert, r.Expr, series)
		}
	}
	// What the alerts must cover (issue: link down, privilege lost, refresh
	// errors, login queue full, leader changes, slow syncs).
	for _, want := range []string{
		"RosterSidecarLinkDown", "RosterSidecarRosterPrivilegeLost", "RosterSidecarRefreshErrors",
		"RosterSidecarLoginQueueFull", "RosterSidecarLeaderChanges", "RosterSidecarNoLeader", "RosterSidecarSlowSyncs",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}

	// The unit tests feed series that exist, and test every alert.
	raw, err = os.ReadFile("alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("alerts_test.yaml: %v", err)
	}
	if !slices.Equal(tests.RuleFiles, []string{"alerts.yaml"}) {
		t.Errorf("alerts_test.yaml tests %v, want alerts.yaml", tests.RuleFiles)
	}
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			checkNames(t, "alerts_test.yaml", s.Series, series)
		}
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for _, a := range alerts {
		if !tested[a] {
			t.Errorf("%s has no promtool unit test in alerts_test.yaml", a)
		}
	}
}
