package rostersync

import (
	"context"
	"fmt"

	"roster-sidecar/roster"
)

// BatchStore is a Store that can also apply a user's whole plan in one
// request, where the server supports it (the component's Prosody helper,
// which also sends the presence the subscriptions written allow). The
// Syncer uses it, when CanBatch says so, instead of one Put or Remove per
// item; results are counted the same way. For the sync's progress bound
// (SyncerConfig.SyncTimeout) the whole ApplyBatch call is one write: it
// must end within SyncTimeout.
type BatchStore interface {
	Store
	// CanBatch reports whether ApplyBatch may be used for owner's roster
	// now. It may wait briefly until the store knows.
	CanBatch(ctx context.Context, owner string) bool
	// ApplyBatch removes the contacts remove (as the store spells them)
	// and adds or replaces the items set in owner's roster. removeErrs
	// and setErrs are nil when every item was applied, else as long as
	// remove and set with the error of each item not applied. err is not
	// nil when nothing was applied: then, if CanBatch has turned false,
	// the Syncer writes the plan item by item instead.
	ApplyBatch(ctx context.Context, owner string, remove []string, set []roster.Item) (removeErrs, setErrs []error, err error)
}

// applyBatch applies plan through bs, counts what succeeded and returns
// the additions and updates written, as apply does. handled is false when
// bs refused the whole plan and no longer batches: the caller then writes
// it item by item.
func (s *Syncer) applyBatch(ctx context.Context, bs BatchStore, owner string, plan Plan, res *Result) (handled bool, written []roster.Item, err error) {
	remove := make([]string, len(plan.Remove))
	for i, it := range plan.Remove {
		remove[i] = it.JID
	}
	set := make([]roster.Item, 0, len(plan.Update)+len(plan.Add))
	set = append(append(set, plan.Update...), plan.Add...)
	removeErrs, setErrs, err := bs.ApplyBatch(ctx, owner, remove, set)
	if err != nil {
		if !bs.CanBatch(ctx, owner) && ctx.Err() == nil {
			return false, nil, nil
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
		return true, nil, fmt.Errorf("%d of %d roster changes failed, first: %w", plan.Len(), plan.Len(), err)
	}
	var failed int
	var firstErr error
	count := func(errs []error, from, to int) int {
		ok := to - from
		for _, e := range errs[min(from, len(errs)):min(to, len(errs))] {
			if e != nil {
				ok--
				failed++
				if firstErr == nil {
					firstErr = e
				}
			}
		}
		return ok
	}
	res.Removed = count(removeErrs, 0, len(remove))
	res.Updated = count(setErrs, 0, len(plan.Update))
	res.Added = count(setErrs, len(plan.Update), len(set))
	for i, it := range set {
		if i >= len(setErrs) || setErrs[i] == nil {
			written = append(written, it)
		}
	}
	if failed > 0 {
		return true, written, fmt.Errorf("%d of %d roster changes failed, first: %w", failed, plan.Len(), firstErr)
	}
	return true, written, nil
}
