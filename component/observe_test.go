package component

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestIQOutcome(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                     "result",
		fmt.Errorf("x: %w", &StanzaError{}):     "error",
		fmt.Errorf("%w after 1s", ErrIQTimeout): "timeout",
		context.DeadlineExceeded:                "timeout",
		context.Canceled:                        "cancelled",
		ErrDisconnected:                         "disconnected",
		errors.New("send iq: broken pipe"):      "disconnected",
	} {
		if got := iqOutcome(err); got != want {
			t.Errorf("iqOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}
