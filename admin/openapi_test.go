package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"roster-sidecar/rosterhttp"
	"roster-sidecar/rostersync"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oaDoc is a parsed OpenAPI document with $ref resolution.
type oaDoc struct {
	root map[string]any
}

func loadOpenAPI(t *testing.T) *oaDoc {
	t.Helper()
	var root map[string]any
	require.NoError(t, yaml.Unmarshal(OpenAPI, &root), "openapi.yaml is not valid YAML")
	v, _ := root["openapi"].(string)
	require.True(t, strings.HasPrefix(v, "3."), "openapi version %q is not 3.x", v)
	return &oaDoc{root: root}
}

// resolve follows $ref (local JSON pointers only) until it reaches an
// object without one.
func (d *oaDoc) resolve(t *testing.T, node any) map[string]any {
	t.Helper()
	for range 10 {
		m, ok := node.(map[string]any)
		require.True(t, ok, "expected an object, got %T (%v)", node, node)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		ptr, ok := strings.CutPrefix(ref, "#/")
		require.True(t, ok, "only local $ref are supported: %s", ref)
		var cur any = d.root
		for _, part := range strings.Split(ptr, "/") {
			part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
			cm, ok := cur.(map[string]any)
			require.True(t, ok, "$ref %s: %q is not inside an object", ref, part)
			cur, ok = cm[part]
			require.True(t, ok, "$ref %s does not resolve", ref)
		}
		node = cur
	}
	t.Fatalf("$ref chain too long")
	return nil
}

// oaResponse is one documented answer of one operation.
type oaResponse struct {
	method, path string // path in OpenAPI form, e.g. /roster_admin/refresh/{user}
	code         int
	mediaType    string
	schema       any // nil when the document gives none
}

func (r oaResponse) key() string { return fmt.Sprintf("%s %s %d", r.method, r.path, r.code) }

// operations returns every documented method+path and its responses.
func (d *oaDoc) operations(t *testing.T) map[string][]oaResponse {
	t.Helper()
	paths := d.resolve(t, d.root["paths"])
	ops := map[string][]oaResponse{}
	for path, item := range paths {
		pi := d.resolve(t, item)
		for _, m := range openAPIMethods {
			op, ok := pi[m]
			if !ok {
				continue
			}
			method := strings.ToUpper(m)
			responses := d.resolve(t, d.resolve(t, op)["responses"])
			require.NotEmpty(t, responses, "%s %s documents no response", method, path)
			var list []oaResponse
			for codeStr, resp := range responses {
				code, err := strconv.Atoi(codeStr)
				require.NoError(t, err, "%s %s: response %q is not a status code", method, path, codeStr)
				r := oaResponse{method: method, path: path, code: code}
				content, _ := d.resolve(t, resp)["content"].(map[string]any)
				require.Len(t, content, 1, "%s: document exactly one media type", r.key())
				for mt, media := range content {
					r.mediaType = mt
					r.schema = d.resolve(t, media)["schema"]
				}
				list = append(list, r)
			}
			ops[method+" "+path] = list
		}
	}
	return ops
}

// validate checks a decoded JSON value against the subset of JSON Schema
// the document uses: $ref, type, properties, required,
// additionalProperties: false, items, enum and minimum.
func (d *oaDoc) validate(t *testing.T, schema any, v any, at string) error {
	t.Helper()
	s := d.resolve(t, schema)
	if enum, ok := s["enum"].([]any); ok {
		if !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
			return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
		}
	}
	switch typ, _ := s["type"].(string); typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, v)
		}
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required property %q missing", at, r)
			}
		}
		for k, pv := range obj {
			ps, ok := props[k]
			if !ok {
				if s["additionalProperties"] == false {
					return fmt.Errorf("%s: property %q is not documented", at, k)
				}
				continue
			}
			if err := d.validate(t, ps, pv, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, v)
		}
		for i, e := range arr {
			if err := d.validate(t, s["items"], e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: want a string, got %T", at, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %T", at, v)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			return fmt.Errorf("%s: want an integer, got %v", at, v)
		}
		if min, ok := s["minimum"].(int); ok && f < float64(min) {
			return fmt.Errorf("%s: %v is below the minimum %d", at, v, min)
		}
	case "":
	default:
		return fmt.Errorf("%s: schema type %q not supported by this test", at, typ)
	}
	return nil
}

// echoPath turns an OpenAPI path template into Echo's form.
var templateParam = regexp.MustCompile(`\{([^}/]+)\}`)

func echoPath(p string) string { return templateParam.ReplaceAllString(p, ":$1") }

// probe is one request that makes the real handler produce one documented
// status code.
type probe struct {
	method, path string // documented path in OpenAPI form
	code         int
	target       string // URL sent
	body         string
	header       []string
	cfg          Config
	syncer       *fakeSyncer
	link         bool // the server reports probeLink (SetStatus)
	// domains, when set, makes the Syncer a DomainReporter.
	domains []rostersync.DomainReady
	// role, when set, puts the server under leader election (SetLeader).
	role *Role
}

// mountMetrics mounts /metrics as `roster-sidecar serve` does (there with
// promhttp.Handler()).
func mountMetrics(srv *Server) {
	srv.Mount("/metrics", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte("# HELP up test\n# TYPE up gauge\nup 1\n"))
	}))
}

// openAPIProbes lists a request for every documented route and status.
func openAPIProbes() []probe {
	const (
		bulk  = "/roster_admin/refresh"
		one   = "/roster_admin/refresh/{user}"
		push  = "/roster_admin/push"
		token = "probe-token"
	)
	notReady := func() *fakeSyncer { return &fakeSyncer{readyErr: errors.New("not connected to the XMPP server")} }
	panicking := func() *fakeSyncer { return &fakeSyncer{readyPanic: true} }
	failing := func() *fakeSyncer {
		return &fakeSyncer{results: map[string]rostersync.Result{
			"john": {Err: errors.New("fetch roster of john: backend answered 500")},
		}}
	}
	mixed := func() *fakeSyncer {
		return &fakeSyncer{results: map[string]rostersync.Result{
			"john":  {Added: 2, Updated: 1, Removed: 1, Skipped: []rosterhttp.Skipped{{JID: "x y@example.test", Reason: "invalid JID"}}},
			"aaron": {Err: errors.New("fetch roster of aaron: backend answered 500")},
		}}
	}
	skipping := func() *fakeSyncer {
		return &fakeSyncer{results: map[string]rostersync.Result{
			"john": {Added: 1, Skipped: []rosterhttp.Skipped{{JID: "@bad", Reason: "invalid JID"}}},
		}}
	}
	blocking := func() *fakeSyncer { return &fakeSyncer{release: make(chan struct{})} }
	auth := []string{"Authorization", "Bearer " + token}
	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}
	foreignHost := []string{"Host", "evil.example:5380"}

	var ps []probe
	add := func(p probe) { ps = append(ps, p) }
	add(probe{method: "POST", path: bulk, code: 200, target: bulk, body: `["john","aaron","john@example.test"]`, syncer: mixed()})
	add(probe{method: "POST", path: bulk, code: 200, target: bulk, body: `[]`})
	// Several domains: users of other domains by bare JID, one not served.
	add(probe{method: "POST", path: bulk, code: 200, target: bulk, body: `["john","john@other.test","x@third.test"]`,
		cfg: Config{UserDomains: []string{"other.test"}}, syncer: mixed()})
	add(probe{method: "POST", path: bulk, code: 400, target: bulk, body: `{"john":true}`})
	add(probe{method: "POST", path: bulk, code: 401, target: bulk, body: `["john"]`, cfg: Config{Token: token}})
	add(probe{method: "POST", path: bulk, code: 403, target: bulk, body: `["john"]`, header: crossSite})
	add(probe{method: "POST", path: bulk, code: 403, target: bulk, body: `["john"]`, header: foreignHost})
	add(probe{method: "POST", path: bulk, code: 413, target: bulk, body: `["` + strings.Repeat("a", 64) + `"]`, cfg: Config{MaxBodyBytes: 16}})
	add(probe{method: "POST", path: bulk, code: 500, target: bulk, body: `["john"]`, syncer: panicking()})
	add(probe{method: "POST", path: bulk, code: 503, target: bulk, body: `["john","aaron"]`, syncer: notReady()})
	badSignature := []string{HeaderTimestamp, "1", HeaderSignature, "v1=" + strings.Repeat("0", 64)}
	add(probe{method: "POST", path: bulk, code: 401, target: bulk, body: `["john"]`, header: badSignature, cfg: Config{HMACSecret: testSecret}})
	add(probe{method: "POST", path: bulk, code: 401, target: bulk, body: `["john"]`, cfg: Config{Token: token, HMACSecret: testSecret}})
	const pushed = `{"john": {"marie@example.test": {"name": "Marie"}, "a@b@c": null}, "aaron": [], "JOHN2": {}}`
	add(probe{method: "POST", path: push, code: 200, target: push, body: pushed})
	add(probe{method: "POST", path: push, code: 200, target: push, body: `{}`})
	add(probe{method: "POST", path: push, code: 400, target: push, body: `["john"]`})
	add(probe{method: "POST", path: push, code: 400, target: push, body: `{"john": {}, "JOHN": {}}`})
	add(probe{method: "POST", path: push, code: 401, target: push, body: `{"john": {}}`, cfg: Config{Token: token}})
	add(probe{method: "POST", path: push, code: 401, target: push, body: `{"john": {}}`, header: badSignature, cfg: Config{HMACSecret: testSecret}})
	add(probe{method: "POST", path: push, code: 403, target: push, body: `{"john": {}}`, header: crossSite})
	add(probe{method: "POST", path: push, code: 403, target: push, body: `{"john": {}}`, header: foreignHost})
	add(probe{method: "POST", path: push, code: 413, target: push, body: `{"john": {"` + strings.Repeat("a", 64) + `@x": {}}}`, cfg: Config{MaxBodyBytes: 16}})
	add(probe{method: "POST", path: push, code: 500, target: push, body: `{"john": {}}`, syncer: panicking()})
	add(probe{method: "POST", path: push, code: 503, target: push, body: `{"john": {}, "aaron": {}}`, syncer: notReady()})
	for _, m := range []string{"GET", "POST"} {
		add(probe{method: m, path: one, code: 200, target: "/roster_admin/refresh/john", syncer: skipping(), header: auth, cfg: Config{Token: token}})
		add(probe{method: m, path: one, code: 400, target: "/roster_admin/refresh/a%20b"})
		add(probe{method: m, path: one, code: 401, target: "/roster_admin/refresh/john", header: []string{"Authorization", "Bearer wrong"}, cfg: Config{Token: token}})
		add(probe{method: m, path: one, code: 401, target: "/roster_admin/refresh/john", header: badSignature, cfg: Config{HMACSecret: testSecret}})
		add(probe{method: m, path: one, code: 403, target: "/roster_admin/refresh/john", header: crossSite})
		add(probe{method: m, path: one, code: 403, target: "/roster_admin/refresh/john", header: foreignHost})
		add(probe{method: m, path: one, code: 500, target: "/roster_admin/refresh/john", syncer: panicking()})
		add(probe{method: m, path: one, code: 502, target: "/roster_admin/refresh/john", syncer: failing()})
		add(probe{method: m, path: one, code: 503, target: "/roster_admin/refresh/john", syncer: notReady()})
		add(probe{method: m, path: one, code: 504, target: "/roster_admin/refresh/john", syncer: blocking(), cfg: Config{RequestTimeout: 20 * time.Millisecond}})
	}
	add(probe{method: "GET", path: "/healthz", code: 200, target: "/healthz", syncer: notReady()})
	add(probe{method: "GET", path: "/readyz", code: 200, target: "/readyz"})
	someReady := []rostersync.DomainReady{{Domain: "example.test", Default: true}, {Domain: "other.test", Err: errors.New("roster privilege not granted for other.test")}}
	noneReady := []rostersync.DomainReady{{Domain: "example.test", Default: true, Err: errors.New("not connected")}, {Domain: "other.test", Err: errors.New("not connected")}}
	add(probe{method: "GET", path: "/readyz", code: 200, target: "/readyz", domains: someReady, cfg: Config{UserDomains: []string{"other.test"}}})
	add(probe{method: "GET", path: "/readyz", code: 503, target: "/readyz", syncer: notReady(), domains: noneReady, cfg: Config{UserDomains: []string{"other.test"}}})
	add(probe{method: "GET", path: "/readyz", code: 500, target: "/readyz", syncer: panicking()})
	add(probe{method: "GET", path: "/readyz", code: 503, target: "/readyz", syncer: notReady()})
	// Leader election: a standby that knows the leader's URL is ready, one
	// that does not is not; a request forwarded to a standby is refused.
	standby := func() *fakeSyncer {
		return &fakeSyncer{readyErr: errors.New("standby: waiting for the lease chat/roster-sidecar")}
	}
	add(probe{method: "GET", path: "/readyz", code: 200, target: "/readyz", syncer: standby(),
		role: &Role{Leader: "pod-a", LeaderURL: "http://10.1.2.3:5380"}})
	add(probe{method: "GET", path: "/readyz", code: 503, target: "/readyz", syncer: standby(), role: &Role{}})
	add(probe{method: "GET", path: "/readyz", code: 200, target: "/readyz", role: &Role{Leading: true, Leader: "pod-a", LeaderURL: "http://10.1.2.3:5380"}})
	add(probe{method: "POST", path: bulk, code: 503, target: bulk, body: `["john"]`, header: []string{HeaderForwarded, "1"},
		syncer: standby(), role: &Role{Leader: "pod-c", LeaderURL: "http://10.1.2.4:5380"}})
	add(probe{method: "GET", path: "/metrics", code: 200, target: "/metrics", cfg: Config{Token: token}})
	add(probe{method: "GET", path: "/openapi.yaml", code: 200, target: "/openapi.yaml", cfg: Config{Token: token}})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		add(probe{method: "GET", path: path, code: 403, target: path, header: foreignHost})
	}
	return append(ps, bulkProbes()...)
}

// TestOpenAPIRoutesMatchHandler fails when the server has a route that the
// document lacks or the document has one the server lacks.
func TestOpenAPIRoutesMatchHandler(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	for op := range doc.operations(t) {
		method, path, _ := strings.Cut(op, " ")
		documented = append(documented, method+" "+echoPath(path))
	}
	srv := newServer(t, Config{}, &fakeSyncer{})
	mountMetrics(srv)
	var served []string
	for _, r := range srv.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(documented)
	served = slices.Compact(slices.Sorted(slices.Values(served)))
	require.Equal(t, served, documented, "routes served by the handler (want) vs documented in openapi.yaml (got)")
}

// TestOpenAPIResponses drives the real handler into every documented status
// of every route and checks the answer's media type and body against the
// document; it fails when a documented status has no probe, or a probe's
// status is not documented.
func TestOpenAPIResponses(t *testing.T) {
	doc := loadOpenAPI(t)
	documented := map[string]oaResponse{}
	for _, list := range doc.operations(t) {
		for _, r := range list {
			documented[r.key()] = r
		}
	}
	covered := map[string]bool{}
	for _, p := range openAPIProbes() {
		key := fmt.Sprintf("%s %s %d", p.method, p.path, p.code)
		covered[key] = true
		t.Run(key, func(t *testing.T) {
			want, ok := documented[key]
			require.True(t, ok, "the handler answers %s but openapi.yaml does not document it", key)
			var syncer Syncer = p.syncer
			if p.syncer == nil {
				syncer = &fakeSyncer{}
			}
			if p.domains != nil {
				syncer = domainSyncer{syncer.(*fakeSyncer), p.domains}
			}
			srv := newServer(t, p.cfg, syncer)
			mountMetrics(srv)
			if p.link {
				srv.SetStatus("v0.0.0 (probe)", probeLink)
			}
			if p.role != nil {
				role := *p.role
				srv.SetLeader(func() Role { return role }, nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := doCtx(t, ctx, srv, p.method, p.target, strings.NewReader(p.body), p.header...)
			require.Equal(t, p.code, r.code, "body %s", r.body)
			mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
			require.NoError(t, err, "Content-Type %q", r.header.Get("Content-Type"))
			require.Equal(t, want.mediaType, mt, "media type")
			if p.code == http.StatusUnauthorized {
				challenges := doc.resolve(t, doc.resolve(t, doc.resolve(t, doc.root["components"])["headers"])["WWW-Authenticate"])
				enum := doc.resolve(t, challenges["schema"])["enum"].([]any)
				got := r.header.Values("WWW-Authenticate")
				require.NotEmpty(t, got)
				for _, c := range got {
					require.Contains(t, enum, c, "WWW-Authenticate")
				}
			}
			switch mt {
			case "application/json":
				var v any
				require.NoError(t, json.Unmarshal([]byte(r.body), &v), "body %s", r.body)
				require.NotNil(t, want.schema, "%s: no schema documented", key)
				require.NoError(t, doc.validate(t, want.schema, v, "body"), "body %s", r.body)
			case "application/yaml":
				require.Equal(t, string(OpenAPI), r.body)
			default:
				require.NotEmpty(t, r.body)
			}
		})
	}
	var missing []string
	for key := range documented {
		if !covered[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "documented responses without a probe in openAPIProbes")
}

// TestOpenAPISchemasMatchTypes checks that the documented properties of the
// JSON answers are exactly the JSON fields of the Go types.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := doc.resolve(t, doc.resolve(t, doc.root["components"])["schemas"])
	for name, v := range map[string]any{
		"Status":           StatusResponse{},
		"Ready":            ReadyResponse{},
		"DomainStatus":     DomainStatus{},
		"Error":            ErrorResponse{},
		"RefreshResponse":  RefreshResponse{},
		"NotReadyResponse": RefreshResponse{},
		"UserResult":       UserResult{},
		"UserResponse":     UserResponse{},
		"Skipped":          rosterhttp.Skipped{},
	} {
		t.Run(name, func(t *testing.T) {
			s := doc.resolve(t, schemas[name])
			props, _ := s["properties"].(map[string]any)
			var got []string
			for k := range props {
				got = append(got, k)
			}
			sort.Strings(got)
			want := jsonFields(v)
			if name == "NotReadyResponse" { // the 503 answer has no results
				want = slices.DeleteFunc(want, func(f string) bool { return f == "results" })
			}
			require.Equal(t, want, got)
		})
	}
}

// jsonFields returns the sorted JSON field names of a struct value.
func jsonFields(v any) []string {
	var out []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = rt.Field(i).Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
