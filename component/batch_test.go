package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
	"roster-sidecar/roster"
)

// helperConfig is testConfig with the server helper looked for on
// example.test.
func helperConfig(addr string) Config {
	cfg := testConfig(addr)
	cfg.UserDomains = []string{"example.test"}
	cfg.DetectHelper = true
	return cfg
}

func TestHelperIsDetected(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			srv := componenttest.NewServer(t)
			srv.SetHelper(on)
			c, _ := startConn(t, helperConfig(srv.Addr()))
			waitReady(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if got := c.CanBatch(ctx, "alice@example.test"); got != on {
				t.Fatalf("CanBatch = %v, want %v", got, on)
			}
			if info, known := c.Helper("EXAMPLE.test"); !known || info.Helper != on {
				t.Fatalf("Helper = %v, %v", info, known)
			}
			if info, known := c.Helper("other.test"); !known || info.Helper {
				t.Fatalf("Helper(other.test) = %v, %v: only user domains are asked", info, known)
			}
			if n := srv.Counts(); n.Gets+n.Sets != 0 {
				t.Errorf("detection sent roster IQs: %+v", n)
			}
		})
	}
}

func TestHelperNotLookedForWithoutDetectHelper(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	c, _ := startConn(t, testConfig(srv.Addr()))
	waitReady(t, c)
	if c.CanBatch(context.Background(), "alice@example.test") {
		t.Fatal("CanBatch without DetectHelper")
	}
	if info, known := c.Helper("example.test"); info.Helper || !known {
		t.Fatalf("Helper = %v, %v", info, known)
	}
}

// A server that drops the query (ejabberd may) has no helper, once
// helperDetectTimeout has passed.
func TestHelperUnansweredCountsAsMissing(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	srv.DropDisco(true)
	c, _ := startConn(t, helperConfig(srv.Addr()))
	waitReady(t, c)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c.CanBatch(ctx, "alice@example.test") {
		t.Fatal("CanBatch = true without an answer")
	}
	if d := time.Since(start); d > helperDetectTimeout+time.Second {
		t.Errorf("detection took %v", d)
	}
}

func TestApplyBatch(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	const owner = "alice@example.test"
	srv.SetRoster(owner, map[string]componenttest.Item{
		"old@example.test":  {Name: "Old", Subscription: "both"},
		"keep@example.test": {Name: "Keep", Subscription: "both"},
	})
	c, _ := startConn(t, helperConfig(srv.Addr()))
	waitReady(t, c)
	ctx := context.Background()
	if !c.CanBatch(ctx, owner) {
		t.Fatal("no helper")
	}
	removeErrs, setErrs, err := c.ApplyBatch(ctx, owner,
		[]string{"old@example.test", "gone@example.test"},
		[]roster.Item{
			{JID: "keep@example.test", Name: "Kept <&>", Subscription: "to", Groups: []string{"A", "B\"'"}},
			{JID: "new@example.test", Name: "New", Subscription: "both"},
		})
	if err != nil || setErrs != nil || len(removeErrs) != 2 || removeErrs[0] != nil {
		t.Fatalf("ApplyBatch = %v, %v, %v", removeErrs, setErrs, err)
	}
	var stErr *StanzaError
	if !errors.As(removeErrs[1], &stErr) || stErr.Condition != "item-not-found" ||
		!strings.Contains(removeErrs[1].Error(), "remove gone@example.test from roster of alice@example.test") {
		t.Errorf("removeErrs[1] = %v", removeErrs[1])
	}
	want := []string{"keep@example.test|Kept <&>|to|A,B\"'", "new@example.test|New|both|"}
	if got := srv.Roster(owner); !slices.Equal(got, want) {
		t.Errorf("roster = %q, want %q", got, want)
	}
	if n := srv.Counts(); n.Sets != 1 || n.Batches != 1 {
		t.Errorf("counts %+v, want one batch request", n)
	}
}

func TestApplyBatchSplitsLargeChangeSets(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	c, _ := startConn(t, helperConfig(srv.Addr()))
	waitReady(t, c)
	const owner = "big@example.test"
	// maxBatchItems+1 items in two requests; then items large enough that
	// maxBatchBytes splits them.
	set := make([]roster.Item, maxBatchItems+1)
	for i := range set {
		set[i] = roster.Item{JID: fmt.Sprintf("c%d@example.test", i), Subscription: "both"}
	}
	if r, s, err := c.ApplyBatch(context.Background(), owner, nil, set); r != nil || s != nil || err != nil {
		t.Fatalf("ApplyBatch = %v, %v, %v", r, s, err)
	}
	if n := srv.Counts(); n.Batches != 2 || len(srv.Roster(owner)) != len(set) {
		t.Fatalf("%d requests, %d items", n.Batches, len(srv.Roster(owner)))
	}
	long := strings.Repeat("n", 1000)
	set = make([]roster.Item, 300) // ~300 KB
	for i := range set {
		set[i] = roster.Item{JID: fmt.Sprintf("l%d@example.test", i), Name: long}
	}
	if r, s, err := c.ApplyBatch(context.Background(), owner, nil, set); r != nil || s != nil || err != nil {
		t.Fatalf("ApplyBatch = %v, %v, %v", r, s, err)
	}
	if n := srv.Counts(); n.Batches != 4 {
		t.Errorf("%d requests in all, want 4", n.Batches)
	}
}

// The helper unloaded after detection: the server answers
// service-unavailable, nothing is applied, and CanBatch turns false.
func TestApplyBatchHelperGone(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	c, _ := startConn(t, helperConfig(srv.Addr()))
	waitReady(t, c)
	ctx := context.Background()
	if !c.CanBatch(ctx, "a@example.test") {
		t.Fatal("no helper")
	}
	srv.SetHelper(false)
	_, _, err := c.ApplyBatch(ctx, "a@example.test", nil, []roster.Item{{JID: "b@example.test"}})
	var stErr *StanzaError
	if !errors.As(err, &stErr) || stErr.Condition != "service-unavailable" {
		t.Fatalf("err = %v, want service-unavailable", err)
	}
	if c.CanBatch(ctx, "a@example.test") {
		t.Error("CanBatch still true")
	}
}

// A request that fails as a whole (here: no answer) fails each of its
// items.
func TestApplyBatchTimeoutFailsEveryItem(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	c, _ := startConn(t, helperConfig(srv.Addr()))
	waitReady(t, c)
	if !c.CanBatch(context.Background(), "a@example.test") {
		t.Fatal("no helper")
	}
	srv.SetReply(func(componenttest.IQ) (string, time.Duration) { return "", 0 })
	r, s, err := c.ApplyBatch(context.Background(), "a@example.test", []string{"x@example.test"}, []roster.Item{{JID: "b@example.test"}})
	if err != nil || len(r) != 1 || len(s) != 1 || !errors.Is(r[0], ErrIQTimeout) || !errors.Is(s[0], ErrIQTimeout) {
		t.Fatalf("ApplyBatch = %v, %v, %v", r, s, err)
	}
}

func TestApplyBatchDisconnected(t *testing.T) {
	c := NewConn(helperConfig(componenttest.FreeAddr(t)), discard)
	if c.CanBatch(context.Background(), "a@example.test") {
		t.Error("CanBatch while disconnected")
	}
	if _, _, err := c.ApplyBatch(context.Background(), "a@example.test", nil, []roster.Item{{JID: "b@example.test"}}); !errors.Is(err, ErrDisconnected) {
		t.Errorf("err = %v", err)
	}
}

// The request is well-formed XML whose items decode to what was given,
// whatever the strings hold.
func TestAppendBatchRoundTrips(t *testing.T) {
	remove := []string{"r<1>@example.test", "r&2@example.test"}
	set := []roster.Item{
		{JID: "a@example.test", Name: "A \"quoted\" 'name' <&>\t\n", Subscription: "both", Groups: []string{"G&1", "<G2>"}},
		{JID: "b@example.test"},
		{JID: "c@example.test", Name: "bad \x00 \xff utf-8"},
	}
	var body []byte
	for i := range len(remove) + len(set) {
		body = appendBatchItem(body, remove, set, i)
	}
	raw := appendBatch(nil, "id1", "roster.example.test", "example.test", "o'wner@example.test", body)
	var iq struct {
		XMLName xml.Name
		Type    string `xml:"type,attr"`
		To      string `xml:"to,attr"`
		Apply   struct {
			XMLName xml.Name
			JID     string `xml:"jid,attr"`
			Items   []struct {
				JID          string   `xml:"jid,attr"`
				Name         string   `xml:"name,attr"`
				Subscription string   `xml:"subscription,attr"`
				Groups       []string `xml:"group"`
			} `xml:"item"`
		} `xml:"urn:xmpp:roster-sidecar:0 apply"`
	}
	if err := xml.Unmarshal(raw, &iq); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if iq.Type != "set" || iq.To != "example.test" || iq.Apply.JID != "o'wner@example.test" || len(iq.Apply.Items) != 5 {
		t.Fatalf("decoded %+v from %s", iq, raw)
	}
	for i, r := range remove {
		if it := iq.Apply.Items[i]; it.JID != r || it.Subscription != "remove" {
			t.Errorf("item %d = %+v", i, it)
		}
	}
	for i, s := range set {
		it := iq.Apply.Items[len(remove)+i]
		name := strings.ToValidUTF8(strings.ReplaceAll(s.Name, "\x00", "\uFFFD"), "\uFFFD")
		if it.JID != s.JID || it.Name != name || it.Subscription != s.Subscription || !slices.Equal(it.Groups, s.Groups) {
			t.Errorf("item %d = %+v, want %+v", len(remove)+i, it, s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The outcome is logged at the first connection and when it changes, not
// at every reconnect.
func TestHelperLoggedOnceAndOnChange(t *testing.T) {
	srv := componenttest.NewServer(t)
	srv.SetHelper(true)
	var logs syncBuffer
	c := NewConn(helperConfig(srv.Addr()), slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	detected := func(conns int) func() bool {
		return func() bool {
			_, known := c.Helper("example.test")
			return known && srv.Counts().Accepted == conns
		}
	}
	componenttest.WaitFor(t, "detection", detected(1))
	srv.DropAll()
	componenttest.WaitFor(t, "detection after a reconnect", detected(2))
	srv.SetHelper(false)
	srv.DropAll()
	componenttest.WaitFor(t, "detection after a second reconnect", detected(3))
	componenttest.WaitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), "server helper not found") })
	out := logs.String()
	if n := strings.Count(out, "server helper found"); n != 1 {
		t.Errorf("%d 'found' lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "server helper not found"); n != 1 || !strings.Contains(out, "reason=\"not advertised in disco#info\"") {
		t.Errorf("%d 'not found' lines, want 1 with its reason:\n%s", n, out)
	}
}
