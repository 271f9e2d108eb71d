package fence

import (
	"context"
	"sync"
	"sync/atomic"
)

// Check is the fencing rule on its own, for a resource that keeps the
// highest token itself (in a file, a row, a key): it returns nil if token may
// act given the highest token seen so far, that is, if token >= highest;
// the caller then stores token as the new highest when it is greater.
// Equal is admitted: it is the same term writing again. It returns a
// *StaleTokenError if token < highest, and ErrNoToken if token is 0, so
// Check(0, t) tests only that t is a token at all.
//
// Check decides; it does not make the decision stick. The caller must
// check, store the new highest and act as one atomic step (under a lock, in
// one transaction, in one conditional statement), or a stale writer can
// slip in between: see Guard.Do.
func Check(highest, token uint64) error {
	if token == 0 {
		return ErrNoToken
	}
	if token < highest {
		return &StaleTokenError{Token: token, Highest: highest}
	}
	return nil
}

// Guard is the fence of one in-memory resource: it admits a fencing token
// only if it is at least the highest it has admitted, and remembers the
// highest. The zero Guard has admitted nothing and is ready to use; use
// NewGuard to resume from a highest token kept across a restart. A Guard
// must not be copied after first use.
//
// Its methods are safe for concurrent use. Admit and Highest never block;
// Do waits for the Do calls before it.
type Guard struct {
	highest atomic.Uint64
	once    sync.Once
	turn    chan struct{} // holds a value while a Do runs; made on first use
}

// NewGuard returns a Guard that has already admitted highest: pass the
// highest token the resource kept before a restart (0 for none). Without
// it, a restarted resource would admit a stale master's token again.
func NewGuard(highest uint64) *Guard {
	g := new(Guard)
	g.highest.Store(highest)
	return g
}

// Highest returns the highest token admitted so far (0 for none).
func (g *Guard) Highest() uint64 { return g.highest.Load() }

// Admit admits token if it is at least the highest admitted so far, and
// raises the highest to it. It returns a *StaleTokenError for a lower token
// and ErrNoToken for 0. It never blocks.
//
// Admit alone is a check, not a fence: it is enough when the action it
// guards is made atomic with it elsewhere, or when nothing follows it (a
// standby learning of a newer term). To act on an in-process resource under
// the check, use Do. Admit does not wait for a Do that is running: a Do
// already past its check finishes its action even when Admit raises the
// highest meanwhile; route every action through Do to order them.
func (g *Guard) Admit(token uint64) error {
	if token == 0 {
		return ErrNoToken
	}
	for {
		h := g.highest.Load()
		if token < h {
			return &StaleTokenError{Token: token, Highest: h}
		}
		if token == h || g.highest.CompareAndSwap(h, token) {
			return nil
		}
	}
}

// Do admits token and runs act while no other Do of g runs, so that the
// check and the action are one step. It returns act's error, or, without
// running act, a *StaleTokenError, ErrNoToken, or ctx's error if ctx ended
// before g was free (a master passes its term's ctx, sdk.Term.Ctx, so that
// a term that ends while it waits never acts). A token admitted stays
// admitted when act fails: a newer master exists either way.
//
// Why not Admit and then act: the check and the action are two steps, and
// a newer master can run both of its steps between them. Master A (token 5)
// is admitted; master B (token 7) is admitted and writes; then A, which
// passed its check before B's, writes too, over B's write. Do makes A's
// check and write finish before B's check begins, or B's check come first,
// and then A's check refuses 5. The same holds for any store: the check
// must sit inside the lock, the transaction or the statement that writes
// (see the SQL recipe in the package documentation).
//
// act must not call Do on g (it would wait for itself). A panic in act
// releases g and propagates.
func (g *Guard) Do(ctx context.Context, token uint64, act func() error) error {
	// The highest only grows, so a token refused now is refused for good:
	// no need to wait for g to refuse it.
	if err := Check(g.Highest(), token); err != nil {
		return err
	}
	g.once.Do(func() { g.turn = make(chan struct{}, 1) })
	select {
	case g.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-g.turn }()
	// Both cases of the select may have been ready: a ctx that ended while
	// we waited must not act.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := g.Admit(token); err != nil {
		return err
	}
	return act()
}
