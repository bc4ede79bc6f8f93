package daemon

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"roster-sidecar/component/componenttest"
)

// Serve stops in order: a refresh in flight when the stop comes finishes
// (the API stops first), and only then do the syncs and the link stop.
func TestStopLetsAnInFlightRefreshFinish(t *testing.T) {
	release := make(chan struct{})
	d := startDaemonWith(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		_ = json.NewEncoder(w).Encode(contactsRoster(2))
	}, nil, nil)
	type result struct {
		code int
		a    refreshAnswer
		err  error
	}
	done := make(chan result, 1)
	go func() { c, a, err := d.refresh(http.DefaultClient, "john"); done <- result{c, a, err} }()
	componenttest.WaitFor(t, "the backend fetch", func() bool { return d.fetches.Load() > 0 })
	d.stop()
	time.Sleep(200 * time.Millisecond) // the stop is under way
	close(release)
	r := <-done
	if r.err != nil || r.code != http.StatusOK || r.a.Updated != 1 {
		t.Fatalf("the in-flight refresh did not finish: %+v", r)
	}
	http.DefaultClient.CloseIdleConnections()
}
