package rostersync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrWritesStalled is the cause of a sync whose writes stopped making
// progress: no write of its user's roster succeeded for
// SyncerConfig.SyncTimeout. Errors of such syncs wrap it.
var ErrWritesStalled = errors.New("roster writes stalled")

// watchdog bounds a sync's write phase by its progress rather than by a
// fixed deadline: its context is cancelled, with a cause wrapping
// ErrWritesStalled, when progress has not been called for bound.
type watchdog struct {
	bound  time.Duration
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// startWatchdog returns a context derived from parent and its watchdog,
// armed for bound. The caller must call stop.
func startWatchdog(parent context.Context, bound time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &watchdog{bound: bound, cancel: cancel}
	w.timer = time.AfterFunc(bound, func() {
		cancel(fmt.Errorf("%w: no roster write succeeded for %s", ErrWritesStalled, bound))
	})
	return ctx, w
}

// progress reports that a write succeeded: the bound starts again.
func (w *watchdog) progress() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.timer.Reset(w.bound)
	}
}

// stop disarms the watchdog and releases its context.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}
