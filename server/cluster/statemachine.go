package cluster

import (
	"errors"
	"io"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rafting/rafting/server/fsm"
)

// tenantSM adapts fsm.Tenant to Dragonboat's concurrent state machine:
// Update applies a batch, then wakes watchers and the session manager once.
type tenantSM struct {
	t *Tenant
}

func (a *tenantSM) Update(entries []sm.Entry) ([]sm.Entry, error) {
	var ch fsm.Changes
	for i := range entries {
		o := a.t.SM.Apply(entries[i].Index, entries[i].Cmd, &ch)
		entries[i].Result = sm.Result{Value: 1, Data: mustJSON(&o)}
	}
	a.t.SM.Notify(&ch)
	a.t.Sessions.Applied(&ch)
	a.t.node.metrics.applied(a.t, len(entries))
	return entries, nil
}

// Lookup runs a query function against the state machine.
func (a *tenantSM) Lookup(q any) (any, error) {
	if f, ok := q.(func(*fsm.Tenant) any); ok {
		return f(a.t.SM), nil
	}
	return nil, errors.New("cluster: unknown tenant query")
}

func (a *tenantSM) PrepareSnapshot() (any, error) { return a.t.SM.Snapshot() }

func (a *tenantSM) SaveSnapshot(ctx any, w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	_, err := w.Write(ctx.([]byte))
	return err
}

func (a *tenantSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	return a.t.SM.Restore(r)
}

func (a *tenantSM) Close() error { return nil }

// metaSM adapts fsm.Meta; after each batch it wakes the reconciler.
type metaSM struct {
	n *Node
}

func (a *metaSM) Update(entries []sm.Entry) ([]sm.Entry, error) {
	for i := range entries {
		o := a.n.meta.Apply(entries[i].Index, entries[i].Cmd)
		entries[i].Result = sm.Result{Value: 1, Data: mustJSON(&o)}
	}
	a.n.meta.Notify()
	a.n.learnNodes()
	a.n.kickReconcile()
	return entries, nil
}

func (a *metaSM) Lookup(q any) (any, error) {
	if f, ok := q.(func(*fsm.Meta) any); ok {
		return f(a.n.meta), nil
	}
	return nil, errors.New("cluster: unknown meta query")
}

func (a *metaSM) PrepareSnapshot() (any, error) { return a.n.meta.Snapshot() }

func (a *metaSM) SaveSnapshot(ctx any, w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	_, err := w.Write(ctx.([]byte))
	return err
}

func (a *metaSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	err := a.n.meta.Restore(r)
	a.n.learnNodes()
	a.n.kickReconcile()
	return err
}

func (a *metaSM) Close() error { return nil }

func mustJSON(v any) []byte {
	b, err := fsm.Marshal(v)
	if err != nil {
		panic(err) // outcomes are plain structs: a bug, not input
	}
	return b
}
