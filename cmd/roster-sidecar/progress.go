package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// progress shows how far a sync of many users is.
type progress interface {
	// done counts one user as finished.
	done(failed bool)
	// finish stops the display; the summary follows it.
	finish()
}

// newProgress returns a progress bar when w is a terminal, else a reporter
// that prints a plain line every interval.
func newProgress(w io.Writer, total int, interval time.Duration) progress {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return newBar(w, total)
	}
	return newLines(w, total, interval)
}

// counts are the users done and failed so far.
type counts struct {
	mu           sync.Mutex
	done, failed int
}

func (c *counts) add(failed bool) (done, nfailed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done++
	if failed {
		c.failed++
	}
	return c.done, c.failed
}

func (c *counts) get() (done, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done, c.failed
}

// bar draws a progress bar: users done/total, rate, elapsed:remaining, and
// the number of errors in its description.
type bar struct {
	counts
	bar *progressbar.ProgressBar
	w   io.Writer
}

func newBar(w io.Writer, total int) *bar {
	return &bar{w: w, bar: progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("syncing, 0 errors"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("users"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

func (b *bar) done(failed bool) {
	_, n := b.add(failed)
	if failed {
		b.bar.Describe(fmt.Sprintf("syncing, %d errors", n))
	}
	_ = b.bar.Add(1)
}

func (b *bar) finish() {
	_ = b.bar.Finish()
	fmt.Fprintln(b.w)
}

// lines prints "progress: 120/1000 users, 2 errors, 40.0 users/s, ETA 22s"
// every interval.
type lines struct {
	counts
	w     io.Writer
	total int
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newLines(w io.Writer, total int, interval time.Duration) *lines {
	l := &lines{w: w, total: total, start: time.Now(), stop: make(chan struct{})}
	l.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.print()
			}
		}
	})
	return l
}

func (l *lines) done(failed bool) { l.add(failed) }

func (l *lines) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *lines) print() {
	done, failed := l.get()
	elapsed := time.Since(l.start)
	rate := float64(done) / elapsed.Seconds()
	eta := "unknown"
	if done > 0 {
		eta = (time.Duration(float64(elapsed) / float64(done) * float64(l.total-done))).Round(time.Second).String()
	}
	fmt.Fprintf(l.w, "progress: %d/%d users, %d errors, %.1f users/s, ETA %s\n", done, l.total, failed, rate, eta)
}
