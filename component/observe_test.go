package component

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"gosrc.io/xmpp/stanza"
)

func TestIQKindAndOutcome(t *testing.T) {
	if k := iqKind(&stanza.IQ{Attrs: stanza.Attrs{Type: stanza.IQTypeGet}, Payload: &pingPayload{}}); k != "ping" {
		t.Errorf("ping kind %q", k)
	}
	if k := iqKind(rosterIQ(stanza.IQTypeSet, "john@example.test")); k != "set" {
		t.Errorf("set kind %q", k)
	}
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
