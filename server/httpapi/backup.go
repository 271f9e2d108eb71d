package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// maxRestoreBytes bounds a restore's body: a backup holds every tenant's
// permanent instances, more than one request's 1 MiB.
const maxRestoreBytes = 256 << 20

// backupWorkers bounds the tenant shards a backup reads, or a restore
// writes, at once.
const backupWorkers = 32

// tenantWait bounds how long a restore waits for one restored tenant's
// shard to run with a leader on the answering node, and then for each of
// its writes: a restore starts every shard at once.
const tenantWait = 2 * time.Minute

// backup answers the cluster's durable state (api.Backup), read after a
// ReadIndex on the meta shard and on each tenant's shard, so that it holds
// every write acknowledged before the request. A tenant whose shard has no
// replica here is read by a node that holds one (its GET /v1/backup?tenant=,
// the admin token): ?tenant= answers that tenant alone, from this node's
// replica.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, _ identity) {
	only := r.URL.Query().Get("tenant")
	if only != "" {
		if err := api.ValidateTenantName("tenant", only); err != nil {
			writeError(w, err)
			return
		}
	}
	ctx, cancel := s.writeCtx(r)
	err := current(ctx, s.node.SyncMeta)
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	mb := s.node.Meta().Backup()
	if only != "" {
		mb.Tenants = slices.DeleteFunc(mb.Tenants, func(rec *fsm.TenantRecord) bool { return rec.Name != only })
		if len(mb.Tenants) == 0 {
			writeError(w, api.Errorf(api.CodeNotFound, "tenant %s not found", only))
			return
		}
	}
	b := api.Backup{Version: api.BackupVersion, CreatedAt: now.UTC(), Index: mb.Applied,
		NextShardID: mb.NextShardID, NextReplicaID: mb.NextReplica, Epochs: mb.Epochs,
		Tenants: make([]api.BackupTenant, len(mb.Tenants))}
	replicas := make([]*cluster.Tenant, len(mb.Tenants))
	for i, rec := range mb.Tenants {
		if !s.node.HostsTenant(rec.Name) && only == "" {
			continue // read where it is placed
		}
		t, ok := s.node.Tenant(rec.Name)
		if !ok || t.ShardID != rec.ShardID {
			writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("backup: tenant %s: its shard is starting on this node", rec.Name)})
			return
		}
		replicas[i] = t
	}
	err = forEach(r.Context(), len(mb.Tenants), backupWorkers, func(gctx context.Context, i int) error {
		rec, t := mb.Tenants[i], replicas[i]
		ctx, cancel := context.WithTimeout(gctx, s.node.Config().RequestTimeout)
		defer cancel()
		if t == nil {
			bt, err := s.backupElsewhere(ctx, rec, r.Header.Get("Authorization"))
			if err != nil {
				return prefixed(fmt.Sprintf("backup: tenant %s: ", rec.Name), err)
			}
			b.Tenants[i] = bt
			return nil
		}
		if err := current(ctx, t.ReadIndex); err != nil {
			return prefixed(fmt.Sprintf("backup: tenant %s: ", rec.Name), err)
		}
		services, _ := t.SM.Durable()
		bt := api.BackupTenant{Name: rec.Name, Epoch: rec.Epoch, Quotas: rec.Quotas,
			TokenHash: rec.Credentials.Current.String(), CreatedAt: time.UnixMilli(rec.CreatedMs).UTC(), Services: services}
		if kvs, _ := t.SM.DurableKV(); len(kvs) > 0 {
			for i := range kvs {
				kvs[i].WithText()
			}
			bt.KV = kvs
		}
		if c := rec.Credentials; c.Previous != nil && now.Before(c.PreviousValidUntil) {
			bt.PreviousTokenHash, bt.PreviousValidUntil = c.Previous.String(), c.PreviousValidUntil.UTC()
		}
		b.Tenants[i] = bt
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, mb.Applied)
	writeJSON(w, http.StatusOK, b)
}

// backupElsewhere reads a tenant's part of a backup from a node that holds
// its shard, authorized by auth (the Authorization of the request that
// asks: an admin's).
func (s *Server) backupElsewhere(ctx context.Context, rec *fsm.TenantRecord, auth string) (api.BackupTenant, error) {
	var last error = errors.New("no node holds it")
	for _, addr := range s.node.TenantNodes(rec.Name) {
		resp, err := s.askPeer(ctx, http.MethodGet, addr, "/v1/backup?tenant="+rec.Name, auth, nil)
		if err != nil {
			last = err
			continue
		}
		var b api.Backup
		if err := json.Unmarshal(resp.body, &b); err != nil {
			last = err
			continue
		}
		for _, bt := range b.Tenants {
			if bt.Name == rec.Name && bt.Epoch == rec.Epoch {
				return bt, nil
			}
		}
		last = fmt.Errorf("node %s answered no tenant %s of epoch %d", addr, rec.Name, rec.Epoch)
	}
	return api.BackupTenant{}, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
		Message: "no node holding its shard answered: " + last.Error()}
}

// forEach calls fn for 0..n-1 on at most workers goroutines and returns the
// first error; after it, the ctx fn gets is cancelled and no call starts.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return context.Cause(ctx) // the request ended before every call was made
	}
	return first
}

// current runs a ReadIndex, retrying while the answer is a retryable 503
// (a shard waking from quiesce, an election) and ctx lasts.
func current(ctx context.Context, readIndex func(context.Context) error) error {
	for {
		err := readIndex(ctx)
		var e *api.Error
		if err == nil || ctx.Err() != nil || !errors.As(err, &e) || !e.Code.Retryable() {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(max(e.RetryAfter, 10*time.Millisecond)):
		}
	}
}

// restore creates a backup's tenants in a cluster that has none (one meta
// entry, which marks them restoring: their clients are answered 503
// restoring, never a partial state), each on R of the nodes as a tenant
// creation places it (PlaceOn), then writes each tenant's policies,
// permanent instances and keys through its shard, several tenants at once,
// and ends each tenant's restore (restore_done). A tenant whose shard has
// no replica on this node is read, and written, by a node that holds one
// (its GET /v1/backup?tenant= and POST /v1/restore?tenant=, with the
// restore's own token): what to write is decided here, for the whole
// backup, before anything is written.
//
// A restore sent again is safe: a tenant still restoring took no client
// write, and is written again (every write is idempotent); a tenant whose
// durable state is the backup's is left alone; a tenant whose state moved
// on since (a changed address, a deleted instance) is refused with 409
// naming it, unless ?force=true, which writes the backup's over it.
//
// ?tenant=NAME (restoreHere) writes that tenant alone of the backup, which
// holds it alone, through this node's replica.
func (s *Server) restore(w http.ResponseWriter, r *http.Request, _ identity) {
	if queryValue(r.URL.RawQuery, "tenant") != "" {
		s.restoreHere(w, r)
		return
	}
	cmd, backup, force, err := parseRestore(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if cmd.EpochGap != 0 && !s.speaksVersion(r.Context(), 2) {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
			Message: "restore: the cluster has not agreed on state version 2 yet (a node runs an older build, or is unreachable); retry"})
		return
	}
	if hasKeys(backup) && !s.speaksVersion(r.Context(), 3) {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
			Message: "restore: the backup holds keys, and the cluster has not agreed on state version 3 (the configuration store) yet; retry"})
		return
	}
	if !s.speaksVersion(r.Context(), 4) {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
			Message: "restore: the cluster has not agreed on state version 4 (tenants held restoring until written) yet; retry"})
		return
	}
	cmd.Mark = true
	ctx, cancel := s.writeCtx(r)
	cmd.Members, cmd.Replicas, err = s.node.PlaceOn(ctx)
	if err == nil {
		cmd.NowMs = time.Now().UnixMilli()
		_, err = s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpRestore, cmd))
	}
	cancel()
	if err != nil {
		writeError(w, err)
		return
	}
	// The restore's own token asks the nodes that hold a tenant this one
	// does not (an admin's: the route takes no other).
	auth := r.Header.Get("Authorization")
	// First what each tenant needs, before anything is written: a refusal
	// leaves the cluster as it was.
	replicas := make([]*cluster.Tenant, len(backup)) // nil: no replica here
	write := make([]bool, len(backup))
	var unchanged atomic.Int64
	// A retry of this very restore (the same backup) that was cut short:
	// some of its tenants are still being written. The ones it finished
	// took client writes since, which a retry must neither revert nor be
	// refused for: it would leave the others held 503 for ever, or
	// --force and the revert as the only way out.
	unfinished := false
	for _, bt := range backup {
		if mark, ok := s.node.Meta().RestoreMark(bt.Name); ok && mark.Pending && mark.BackupIndex == cmd.BackupIndex {
			unfinished = true
		}
	}
	var leftAlone sync.Map
	err = forEach(r.Context(), len(backup), backupWorkers, func(gctx context.Context, i int) error {
		bt := backup[i]
		here := s.node.HostsTenant(bt.Name)
		if here {
			t, err := s.restoredTenant(gctx, bt.Name)
			if err != nil {
				return err
			}
			replicas[i] = t
		}
		mark, marked := s.node.Meta().RestoreMark(bt.Name)
		if marked && mark.Pending {
			write[i] = true // no client has written to it
			return nil
		}
		// Its durable state now, and where it was read: this node's
		// replica's index, or the node that answered.
		var same bool
		var at string
		if t := replicas[i]; t != nil {
			ctx, cancel := context.WithTimeout(gctx, s.node.Config().RequestTimeout)
			err := current(ctx, t.ReadIndex)
			cancel()
			if err != nil {
				return prefixed(fmt.Sprintf("restore: tenant %s: ", bt.Name), err)
			}
			have, _ := t.SM.Durable()
			kvs, _ := t.SM.DurableKV()
			same, at = sameDurable(bt, have, kvs), fmt.Sprintf("tenant index %d now", t.SM.Applied())
		} else {
			have, err := s.durableElsewhere(gctx, bt.Name, auth)
			if err != nil {
				return prefixed(fmt.Sprintf("restore: tenant %s: ", bt.Name), err)
			}
			same, at = sameDurable(bt, have.Services, have.KV), "read where its shard is"
		}
		switch {
		case same:
			unchanged.Add(1)
		case force:
			write[i] = true
		case marked && unfinished && mark.BackupIndex == cmd.BackupIndex:
			leftAlone.Store(bt.Name, at) // finished by this restore's first run
		case marked:
			return api.Errorf(api.CodeConflict, "restore: tenant %s has changed since it was restored: its permanent instances, policies or keys differ from the backup's (%s, %d when the restore ended; the backup was read at meta index %d); restore with --force (?force=true) to write the backup's over them",
				bt.Name, at, mark.Index, cmd.BackupIndex)
		default:
			return api.Errorf(api.CodeConflict, "restore: tenant %s was not created by a restore and its permanent instances, policies or keys differ from the backup's (%s; the backup was read at meta index %d); restore with --force (?force=true) to write the backup's over them",
				bt.Name, at, cmd.BackupIndex)
		}
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	leftAlone.Range(func(name, at any) bool {
		s.log.Info("restore sent again: a tenant it had finished changed since, left alone", "tenant", name, "state", at)
		return true
	})
	var policies, instances, keys atomic.Int64
	written := make([]uint64, len(backup)) // each tenant's index once written, 0: not written
	ends := make([]uint64, len(backup))    // the meta index of each tenant's restore_done
	err = forEach(r.Context(), len(backup), backupWorkers, func(gctx context.Context, i int) error {
		bt, t := backup[i], replicas[i]
		if !write[i] {
			return nil
		}
		if h := s.restoreHook.Load(); h != nil {
			(*h)(bt.Name)
		}
		var n api.RestoreResponse
		var err error
		if t != nil {
			n, written[i], err = s.writeRestored(gctx, t, bt)
		} else {
			n, written[i], err = s.writeElsewhere(gctx, bt, cmd.BackupIndex, force, auth)
		}
		if err != nil {
			return err
		}
		policies.Add(int64(n.Policies))
		instances.Add(int64(n.Instances))
		keys.Add(int64(n.Keys))
		// Its clients are let in once this is applied, and by each node
		// once its replica has applied what was written.
		ctx, cancel := context.WithTimeout(gctx, s.node.Config().RequestTimeout)
		defer cancel()
		o, err := s.node.ProposeMeta(ctx, fsm.Encode(fsm.OpRestoreDone, fsm.RestoreDone{Name: bt.Name, Index: written[i]}))
		if err != nil {
			return prefixed(fmt.Sprintf("restore: tenant %s: its end: ", bt.Name), err)
		}
		ends[i] = o.Index
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	shards := map[uint64]uint64{}
	for i, index := range written {
		if rec, ok := s.node.Meta().Tenant(backup[i].Name); ok && index != 0 {
			shards[rec.ShardID] = index
		}
	}
	s.awaitRestored(r.Context(), slices.Max(append(ends, 0)), shards)
	writeJSON(w, http.StatusOK, api.RestoreResponse{Tenants: len(backup), Policies: int(policies.Load()), Instances: int(instances.Load()),
		Keys: int(keys.Load()), Unchanged: int(unchanged.Load())})
}

// restoreSettle bounds how long a restore waits, once written, for the
// other nodes to serve what it wrote.
const restoreSettle = 10 * time.Second

// awaitRestored waits (at most restoreSettle) until every other node that
// answers has applied the meta entry at metaIndex and, for each shard it
// hosts of shards, the index given: a client that reads any node once the
// restore has answered finds the tenants whole, not 503 restoring. A node
// that does not answer is not waited for (it answers 503 restoring until
// it has caught up).
func (s *Server) awaitRestored(ctx context.Context, metaIndex uint64, shards map[uint64]uint64) {
	if metaIndex == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, restoreSettle)
	defer cancel()
	s.awaitMetaEverywhere(ctx, metaIndex)
	for ctx.Err() == nil {
		behind := false
		for _, applied := range s.PeerApplied(ctx) {
			for shard, index := range shards {
				if a, ok := applied[shard]; ok && a < index {
					behind = true
				}
			}
		}
		if !behind {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sameDurable reports whether a tenant's durable state (its services'
// policies and permanent instances, and its permanent keys, as a backup
// holds them) is what a backup's tenant holds, indexes and versions apart:
// a restore of it would change nothing.
func sameDurable(bt api.BackupTenant, have []api.BackupService, kvs []api.KV) bool {
	want := make([]api.BackupService, 0, len(bt.Services))
	for _, svc := range bt.Services {
		if svc.Policy == nil && len(svc.Instances) == 0 {
			continue // a backup never holds one; nothing restores it
		}
		if svc.Instances == nil {
			svc.Instances = []api.Instance{}
		}
		want = append(want, svc)
	}
	hj, err1 := json.Marshal(have)
	wj, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil || !bytes.Equal(hj, wj) {
		return false
	}
	if len(kvs) != len(bt.KV) {
		return false
	}
	for i, kv := range kvs {
		if kv.Key != bt.KV[i].Key || !bytes.Equal(kv.Value, bt.KV[i].Value) {
			return false
		}
	}
	return true
}

// writeRestored writes a backup's tenant (its policies, permanent
// instances and keys) through this node's replica t, and answers what it
// wrote and the shard's applied index then.
func (s *Server) writeRestored(ctx context.Context, t *cluster.Tenant, bt api.BackupTenant) (api.RestoreResponse, uint64, error) {
	n := api.RestoreResponse{Tenants: 1}
	propose := func(what string, op fsm.Op, c any) error {
		// Longer than a request's bound: every shard of the restore
		// starts at once, and an attempt that finds its shard busy is
		// retried within the ctx (the writes are idempotent).
		ctx, cancel := context.WithTimeout(ctx, tenantWait)
		defer cancel()
		if _, err := proposeTo(ctx, t, op, c); err != nil {
			return prefixed(fmt.Sprintf("restore: tenant %s: %s: ", bt.Name, what), err)
		}
		return nil
	}
	now := time.Now().UnixMilli()
	for _, svc := range bt.Services {
		if svc.Policy != nil {
			if err := propose("service "+svc.Name+": policy", fsm.OpSetPolicy, fsm.SetPolicy{Service: svc.Name, ColdStart: *svc.Policy, AtMs: now}); err != nil {
				return n, 0, err
			}
			n.Policies++
		}
		for _, in := range svc.Instances {
			reg := registration(in, svc.Carried)
			// The instance keeps its registration time (registered_at):
			// a restore reproduces what a read showed.
			if err := propose("instance "+svc.Name+"/"+in.ID, fsm.OpRegister, fsm.Register{Service: svc.Name, ID: in.ID, Instance: reg,
				AtMs: now, RegisteredMs: unixMs(in.RegisteredAt)}); err != nil {
				return n, 0, err
			}
			n.Instances++
		}
	}
	// The keys, in transactions of up to api.MaxTxnOps puts and about
	// restoreTxnBytes of values: a store of 10,000 keys is some 160
	// entries, not 10,000.
	for _, batch := range kvBatches(bt.KV) {
		if err := propose(fmt.Sprintf("keys %s to %s", batch.Put[0].Key, batch.Put[len(batch.Put)-1].Key), fsm.OpKVTxn, batch); err != nil {
			return n, 0, err
		}
		n.Keys += len(batch.Put)
	}
	return n, t.SM.Applied(), nil
}

// restoreHere answers POST /v1/restore?tenant=NAME, which a restore sends
// to a node that holds NAME's shard when its own node holds none: it
// writes the backup's tenant NAME (the backup holds it alone) through this
// node's replica, and answers what it wrote, with the shard's applied
// index then in the index header. The restore that sent it decided to
// write the tenant; this node writes only a tenant still restoring (no
// client has written to it), or any with ?force=true, and never asks
// another node (503 when it holds no replica: ask one that does).
func (s *Server) restoreHere(w http.ResponseWriter, r *http.Request) {
	name := queryValue(r.URL.RawQuery, "tenant")
	if err := api.ValidateTenantName("tenant", name); err != nil {
		writeError(w, err)
		return
	}
	_, backup, force, err := parseRestore(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(backup) != 1 || backup[0].Name != name {
		writeError(w, api.BadField("tenants", "a restore of tenant %s alone (?tenant=) holds that tenant alone", name))
		return
	}
	if mark, ok := s.node.Meta().RestoreMark(name); !force && (!ok || !mark.Pending) {
		writeError(w, api.Errorf(api.CodeConflict, "restore: tenant %s is not being restored (its restore ended, or no restore created it); send the whole backup to /v1/restore, with ?force=true to write it over the tenant", name))
		return
	}
	if !s.node.HostsTenant(name) {
		writeError(w, &api.Error{Code: api.CodeUnavailable, RetryAfter: 200 * time.Millisecond,
			Message: fmt.Sprintf("restore: tenant %s: its shard has no replica on this node; ask one of %s", name, strings.Join(s.node.TenantNodes(name), ", "))})
		return
	}
	t, err := s.restoredTenant(r.Context(), name)
	if err != nil {
		writeError(w, err)
		return
	}
	n, index, err := s.writeRestored(r.Context(), t, backup[0])
	if err != nil {
		writeError(w, err)
		return
	}
	setIndex(w, index)
	writeJSON(w, http.StatusOK, n)
}

// writeElsewhere writes a backup's tenant through a node that holds its
// shard (its POST /v1/restore?tenant=, authorized by auth), trying each
// such node while the answer may change by asking again (at most
// tenantWait: the writes are idempotent, and a node that does not answer
// is asked again or another one is), and answers what was written and the
// shard's applied index then.
func (s *Server) writeElsewhere(ctx context.Context, bt api.BackupTenant, backupIndex uint64, force bool, auth string) (api.RestoreResponse, uint64, error) {
	fail := func(err error) (api.RestoreResponse, uint64, error) {
		return api.RestoreResponse{}, 0, prefixed(fmt.Sprintf("restore: tenant %s: ", bt.Name), err)
	}
	body, err := json.Marshal(api.Backup{Version: api.BackupVersion, Index: backupIndex, Tenants: []api.BackupTenant{bt}})
	if err != nil {
		return fail(err)
	}
	query := "?tenant=" + bt.Name
	if force {
		query += "&force=true"
	}
	ctx, cancel := context.WithTimeout(ctx, tenantWait)
	defer cancel()
	var last error = errors.New("no node holds its shard")
	for {
		for _, addr := range s.node.TenantNodes(bt.Name) {
			resp, err := s.askPeer(ctx, http.MethodPost, addr, "/v1/restore"+query, auth, body)
			if err != nil {
				last = err
				if e, ok := errors.AsType[*api.Error](err); ok && !e.Code.Retryable() {
					return fail(err)
				}
				continue
			}
			var n api.RestoreResponse
			index, ierr := strconv.ParseUint(resp.header.Get(api.HeaderIndex), 10, 64)
			if err := json.Unmarshal(resp.body, &n); err != nil || ierr != nil || index == 0 {
				return fail(fmt.Errorf("node %s answered %q (index %q)", addr, resp.body, resp.header.Get(api.HeaderIndex)))
			}
			return n, index, nil
		}
		select {
		case <-ctx.Done():
			return fail(&api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("no node holding its shard wrote it within %v (%v); send the restore again", tenantWait, last)})
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// durableElsewhere reads a tenant's durable state, as a backup holds it,
// from a node that holds its shard (its GET /v1/backup?tenant=, authorized
// by auth), asking again while the answer may change by asking again (at
// most tenantWait: its shard may be starting).
func (s *Server) durableElsewhere(ctx context.Context, name, auth string) (api.BackupTenant, error) {
	ctx, cancel := context.WithTimeout(ctx, tenantWait)
	defer cancel()
	for {
		rec, ok := s.node.Meta().Tenant(name)
		if !ok {
			return api.BackupTenant{}, api.Errorf(api.CodeNotFound, "tenant %s not found", name)
		}
		bt, err := s.backupElsewhere(ctx, rec, auth)
		if err == nil {
			return bt, nil
		}
		if e, ok := errors.AsType[*api.Error](err); ok && !e.Code.Retryable() || ctx.Err() != nil {
			return api.BackupTenant{}, err
		}
		select {
		case <-ctx.Done():
			return api.BackupTenant{}, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// peerAnswer is a peer's answer to askPeer.
type peerAnswer struct {
	header http.Header
	body   []byte
}

// askPeer sends a request to the node at addr (its API address), bounded
// by ctx alone (not the peer client's timeout: a restore's write of a
// tenant may take longer), and answers its 2xx answer, or the error it
// answered (an *api.Error) or met.
func (s *Server) askPeer(ctx context.Context, method, addr, path, auth string, body []byte) (peerAnswer, error) {
	tr := http.DefaultTransport
	if s.peers != nil && s.peers.Transport != nil {
		tr = s.peers.Transport // keeps its connections to the peers
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.scheme()+"://"+addr+path, rd)
	if err != nil {
		return peerAnswer{}, err
	}
	req.Header.Set("Authorization", auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return peerAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxRestoreBytes))
	if err != nil {
		return peerAnswer{}, err
	}
	if resp.StatusCode/100 != 2 {
		return peerAnswer{}, api.Decode(resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	return peerAnswer{header: resp.Header, body: b}, nil
}

// restoring refuses a request to a tenant that a restore has not finished
// writing, or whose replica on this node has not yet applied what the
// restore wrote: 503 restoring, never a partial or empty state.
func (s *Server) restoring(name string) error {
	mark, ok := s.node.Meta().RestoreMark(name)
	switch {
	case !ok:
		return nil
	case mark.Pending:
		return &api.Error{Code: api.CodeRestoring, RetryAfter: time.Second,
			Message: fmt.Sprintf("tenant %s is being restored from a backup; retry", name)}
	}
	if t, ok := s.node.Tenant(name); ok {
		if applied := t.SM.Applied(); applied < mark.Index {
			return &api.Error{Code: api.CodeRestoring, RetryAfter: 200 * time.Millisecond,
				Message: fmt.Sprintf("tenant %s: this node's replica has not applied its restore yet (at index %d of %d); retry", name, applied, mark.Index)}
		}
	}
	return nil
}

// restoringCluster reports whether a tenant token this node does not know
// may be one a restore is bringing: a restore is writing some tenant, or
// the node was started to be restored into (--await-restore) and no
// restore has finished yet.
func (s *Server) restoringCluster() bool {
	m := s.node.Meta()
	if s.node.Config().AwaitRestore {
		return !m.Restored()
	}
	return m.Restoring()
}

// errRestoringCluster answers a token this cluster does not know while
// restoringCluster: it may be a token of a tenant of the backup, and a
// client takes a 401 as final.
var errRestoringCluster = staticError(&api.Error{Code: api.CodeRestoring, RetryAfter: time.Second,
	Message: "a restore from a backup is in progress and this token is not known yet; retry"})

// restoreTxnBytes bounds the values of one restore transaction.
const restoreTxnBytes = 256 << 10

// kvBatches cuts a backup's keys into the transactions that restore them.
func kvBatches(kvs []api.KV) []fsm.KVTxn {
	var out []fsm.KVTxn
	var cur fsm.KVTxn
	size := 0
	for _, kv := range kvs {
		if len(cur.Put) == api.MaxTxnOps || len(cur.Put) > 0 && size+len(kv.Value) > restoreTxnBytes {
			out = append(out, cur)
			cur, size = fsm.KVTxn{}, 0
		}
		value := kv.Value
		if value == nil {
			value = []byte{}
		}
		cur.Put = append(cur.Put, fsm.KVTxnPut{Key: kv.Key, Value: value})
		size += len(value)
	}
	if len(cur.Put) > 0 {
		out = append(out, cur)
	}
	return out
}

func hasKeys(backup []api.BackupTenant) bool {
	for _, t := range backup {
		if len(t.KV) > 0 {
			return true
		}
	}
	return false
}

// restoredTenant waits (at most tenantWait) until a restored tenant's
// shard runs on this node with a leader.
func (s *Server) restoredTenant(ctx context.Context, name string) (*cluster.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, tenantWait)
	defer cancel()
	for {
		if t, ok := s.node.Tenant(name); ok {
			if _, _, known := t.Leader(); known {
				return t, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
				Message: fmt.Sprintf("restore: tenant %s: its shard did not run here with a leader within %v; send the restore again", name, tenantWait)}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// prefixed puts context before an error's message, keeping its code.
func prefixed(prefix string, err error) error {
	if e, ok := err.(*api.Error); ok {
		c := *e
		c.Message = prefix + c.Message
		return &c
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// DefaultEpochGap is how many incarnations of each tenant name a restore
// skips by default (?epoch_gap=): the cluster the backup came from may have
// deleted and created a tenant again after the backup was taken, and the
// restored one's fencing tokens must be above all of that cluster's.
const DefaultEpochGap = 16

// parseRestore reads and checks a backup (api.Backup) for POST /v1/restore,
// ?epoch_gap=N and ?force=true.
func parseRestore(w http.ResponseWriter, r *http.Request) (cmd fsm.Restore, _ []api.BackupTenant, force bool, _ error) {
	gap := uint64(DefaultEpochGap)
	if queryValue(r.URL.RawQuery, "epoch_gap") != "" {
		n, err := parseUintParam(r, "epoch_gap")
		if err != nil {
			return fsm.Restore{}, nil, false, err
		}
		if n >= fsm.MaxEpoch {
			return fsm.Restore{}, nil, false, api.BadField("epoch_gap", "%d must be below %d, the epochs a tenant name has", n, fsm.MaxEpoch)
		}
		gap = n
	}
	if v := queryValue(r.URL.RawQuery, "force"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			return fsm.Restore{}, nil, false, api.BadField("force", "%q is not true or false", v)
		}
		force = f
	}
	var b api.Backup
	if err := decodeUpTo(w, r, &b, false, maxRestoreBytes); err != nil {
		return fsm.Restore{}, nil, false, err
	}
	cmd, tenants, err := checkBackup(b)
	cmd.EpochGap = gap
	cmd.BackupIndex = b.Index
	return cmd, tenants, force, err
}

// checkBackup validates a decoded backup and makes the meta command that
// restores its tenants.
func checkBackup(b api.Backup) (fsm.Restore, []api.BackupTenant, error) {
	if b.Version != api.BackupVersion {
		return fsm.Restore{}, nil, api.BadField("version", "%d is not a backup version this server reads (%d)", b.Version, api.BackupVersion)
	}
	cmd := fsm.Restore{NextShardID: b.NextShardID, NextReplicaID: b.NextReplicaID, Epochs: map[string]uint64{}}
	for name, e := range b.Epochs {
		if err := api.ValidateTenantName("epochs", name); err != nil {
			return fsm.Restore{}, nil, err
		}
		cmd.Epochs[name] = e
	}
	seen := map[string]bool{}
	for i, t := range b.Tenants {
		field := fmt.Sprintf("tenants[%d]", i)
		if err := api.ValidateTenantName(field+".name", t.Name); err != nil {
			return fsm.Restore{}, nil, err
		}
		if seen[t.Name] {
			return fsm.Restore{}, nil, api.BadField(field+".name", "tenant %s is named twice", t.Name)
		}
		seen[t.Name] = true
		quotas, err := tenants.Resolve(t.Quotas)
		if err != nil {
			return fsm.Restore{}, nil, prefixed(field+": ", err)
		}
		cur, err := tenants.ParseHash(t.TokenHash)
		if err != nil || cur.IsZero() {
			return fsm.Restore{}, nil, api.BadField(field+".token_hash", "want 64 hexadecimal digits")
		}
		creds := tenants.Credentials{Current: cur}
		if t.PreviousTokenHash != "" {
			prev, err := tenants.ParseHash(t.PreviousTokenHash)
			if err != nil {
				return fsm.Restore{}, nil, api.BadField(field+".previous_token_hash", "want 64 hexadecimal digits")
			}
			creds.Previous, creds.PreviousValidUntil = &prev, t.PreviousValidUntil
		}
		// The restored tenant's epoch is above the one it had: its fencing
		// tokens are above every token issued before.
		cmd.Epochs[t.Name] = max(cmd.Epochs[t.Name], t.Epoch)
		cmd.Tenants = append(cmd.Tenants, fsm.RestoreTenant{Name: t.Name, Quotas: quotas, Credentials: creds,
			CreatedMs: t.CreatedAt.UnixMilli()})
		services := map[string]bool{}
		for j, svc := range t.Services {
			sf := fmt.Sprintf("%s.services[%d]", field, j)
			if err := api.ValidateName(sf+".name", svc.Name); err != nil {
				return fsm.Restore{}, nil, err
			}
			if services[svc.Name] {
				return fsm.Restore{}, nil, api.BadField(sf+".name", "service %s is named twice", svc.Name)
			}
			services[svc.Name] = true
			for k, in := range svc.Instances {
				inf := fmt.Sprintf("%s.instances[%d]", sf, k)
				if err := api.ValidateName(inf+".id", in.ID); err != nil {
					return fsm.Restore{}, nil, err
				}
				if in.SessionTag != "" {
					return fsm.Restore{}, nil, api.BadField(inf+".session_tag", "a backup holds permanent instances only")
				}
				if in.Meta != nil && tenants.MetaSize(in.Meta) > api.MaxBodyBytes {
					return fsm.Restore{}, nil, api.BadField(inf+".meta", "too large")
				}
				// Every check the registration will meet without the
				// state, now: a restore refused half way would leave the
				// cluster changed.
				reg := fsm.Register{Service: svc.Name, ID: in.ID, Instance: registration(in, svc.Carried)}
				if err := fsm.CheckCommand(reg, quotas, t.Name); err != nil {
					return fsm.Restore{}, nil, prefixed(inf+": ", err)
				}
			}
			if svc.Policy != nil {
				if err := fsm.CheckCommand(fsm.SetPolicy{Service: svc.Name, ColdStart: *svc.Policy}, quotas, t.Name); err != nil {
					return fsm.Restore{}, nil, prefixed(sf+".policy: ", err)
				}
			}
		}
		if err := checkBackupKV(field, t, quotas); err != nil {
			return fsm.Restore{}, nil, err
		}
	}
	return cmd, b.Tenants, nil
}

// checkBackupKV checks a backup tenant's keys: valid, each once, permanent,
// within the tenant's quotas all together — every check the restore's
// transactions will meet without the state, now.
func checkBackupKV(field string, t api.BackupTenant, quotas api.Quotas) error {
	maxKeys, maxValue, maxBytes := tenants.KVLimits(quotas)
	if n := int64(len(t.KV)); n > maxKeys {
		return api.QuotaExceeded(t.Name, tenants.QuotaMaxKeys, maxKeys, n)
	}
	seen := make(map[string]bool, len(t.KV))
	var size int64
	for j, kv := range t.KV {
		kf := fmt.Sprintf("%s.kv[%d]", field, j)
		if err := api.ValidateKey(kf+".key", kv.Key); err != nil {
			return err
		}
		if seen[kv.Key] {
			return api.BadField(kf+".key", "key %s is named twice", kv.Key)
		}
		seen[kv.Key] = true
		if kv.SessionTag != "" {
			return api.BadField(kf+".session_tag", "a backup holds permanent keys only")
		}
		if kv.Text != nil && string(kv.Value) != *kv.Text {
			return api.BadField(kf+".text", "differs from value (value is the key's bytes; text, when given, the same as a string)")
		}
		if n := int64(len(kv.Value)); n > maxValue {
			return &api.Error{Code: api.CodeTooLarge, Quota: tenants.QuotaMaxValueBytes, Limit: maxValue, Used: n,
				Message: fmt.Sprintf("%s.value: %d bytes, over max_value_bytes %d", kf, n, maxValue)}
		}
		size += tenants.KVSize(kv.Key, len(kv.Value))
	}
	if size > maxBytes {
		return api.QuotaExceeded(t.Name, tenants.QuotaMaxKVBytes, maxBytes, size)
	}
	return nil
}

// unixMs is t in Unix milliseconds, 0 for the zero time.
func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// versionWait bounds how long a request waits for the cluster to agree on
// a state version: a cluster that just started agrees within seconds.
const versionWait = 15 * time.Second

// speaksVersion waits (at most versionWait) until the meta state's version
// is at least v.
func (s *Server) speaksVersion(ctx context.Context, v uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, versionWait)
	defer cancel()
	for s.node.Meta().Version() < v {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// registration is the registration that restores instance in of a backup
// (its service carrying the cold-start policy carried, if any). It has no
// session: a backup holds none, and restored instances are sessionless
// until their members register again.
func registration(in api.Instance, carried *api.ColdStart) api.RegisterRequest {
	weight := in.Weight
	return api.RegisterRequest{Address: in.Address, Mode: in.Mode, State: in.State, Weight: &weight,
		Priority: in.Priority, Zone: in.Zone, Meta: in.Meta, ColdStart: carried}
}
