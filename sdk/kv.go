package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// The configuration store's writes and one-off reads (DESIGN.md,
// "Configuration"). Every write waits, before it returns, until the
// Client's Config views of the keys it wrote show it (read-your-writes);
// views of other subtrees are not waited for. A write that applied, whose
// views did not catch up before ctx ended, returns its result and an
// error that says it applied.
//
// Writes that compare (CompareAndSet, a Txn with compares) are retried
// only while their outcome is known: after an attempt that got no answer
// or a 504, a retry that finds the compare failing may be finding this
// write's own success, so the call ends with an error matching ErrTimeout
// (outcome unknown) rather than ErrConflict. Writes that do not compare
// are retried until ctx ends: sending one again changes nothing but its
// key's mod_index and version.

// kvPath is the REST path of a key, or of every key for "": keys are
// made of URL-safe characters, validated before they get here.
func (c *Client) kvPath(key string) string {
	if key == "" {
		return c.tenantPath("/kv")
	}
	return c.tenantPath("/kv/" + key)
}

// Get reads one key, linearizably: whatever was committed before Get was
// called, in this process or another, is in the answer. A missing key is
// an error matching ErrNotFound. To follow keys, use Config.
func (c *Client) Get(ctx context.Context, key string) (api.KV, error) {
	if err := api.ValidateKey("key", key); err != nil {
		return api.KV{}, fmt.Errorf("sdk: get: %w", err)
	}
	resp, err := c.tr.Do(ctx, transport.Request{Method: http.MethodGet, Path: c.kvPath(key) + "?consistent=true", Retry: writeRetry})
	if err != nil {
		return api.KV{}, fmt.Errorf("sdk: get %s: %w", key, err)
	}
	var out api.KVResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return api.KV{}, fmt.Errorf("sdk: get %s: %w", key, err)
	}
	return out.KV, nil
}

// Put writes a key's value (nil is the empty value) and returns the key as
// written: its ModIndex is the Raft index of this write.
func (c *Client) Put(ctx context.Context, key string, value []byte) (api.KV, error) {
	kv, pos, err := c.putKV(ctx, key, value, nil, "")
	if err != nil {
		return api.KV{}, fmt.Errorf("sdk: put %s: %w", key, err)
	}
	return kv, c.wroteKV(ctx, "put", pos, key)
}

// CompareAndSet writes a key's value only if the key's mod_index is still
// ifIndex (0: only if the key does not exist), and returns the key as
// written. When the key has changed it writes nothing and returns an
// error matching ErrConflict whose *api.Error (errors.As) carries the
// key's mod_index now in Conflict.ModIndex (0: it does not exist), so a
// loser may try again from there without a read:
//
//	kv, err := c.CompareAndSet(ctx, "jobs/owner", me, seen)
//	var ae *api.Error
//	if errors.As(err, &ae) && ae.Conflict != nil {
//		seen = ae.Conflict.ModIndex // someone else's write
//	}
//
// An error matching ErrTimeout means the outcome is unknown (see above):
// read the key to learn it.
func (c *Client) CompareAndSet(ctx context.Context, key string, value []byte, ifIndex uint64) (api.KV, error) {
	kv, pos, err := c.putKV(ctx, key, value, &ifIndex, "")
	if err != nil {
		return api.KV{}, fmt.Errorf("sdk: compare-and-set %s: %w", key, err)
	}
	return kv, c.wroteKV(ctx, "compare-and-set", pos, key)
}

// Delete deletes a key. Deleting a key that does not exist succeeds.
func (c *Client) Delete(ctx context.Context, key string) error {
	if err := api.ValidateKey("key", key); err != nil {
		return fmt.Errorf("sdk: delete: %w", err)
	}
	resp, err := c.kvWrite(ctx, transport.Request{Method: http.MethodDelete, Path: c.kvPath(key)},
		&api.ClientFrame{Type: api.FrameDeleteKV, Key: key}, nil, false)
	if err != nil {
		return fmt.Errorf("sdk: delete %s: %w", key, err)
	}
	var out api.KVDeleteResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return fmt.Errorf("sdk: delete %s: %w", key, err)
	}
	return c.wroteKV(ctx, "delete", position(resp.Epoch(), out.Index), key)
}

// Txn applies a transaction: when every compare holds, all of its puts
// and deletes, in one Raft entry; when one fails, none of it. It returns
// the index the transaction was applied at. A failed compare is an error
// matching ErrConflict whose *api.Error carries Conflict: the key, its
// mod_index now and the position of the first failed compare (Compare).
// A transaction holds at most api.MaxTxnOps compares, puts and deletes,
// and puts or deletes a key at most once.
func (c *Client) Txn(ctx context.Context, t *Txn) (uint64, error) {
	if t == nil {
		t = new(Txn)
	}
	if err := t.check(); err != nil {
		return 0, fmt.Errorf("sdk: txn: %w", err)
	}
	resp, err := c.kvWrite(ctx, transport.Request{Method: http.MethodPost, Path: c.tenantPath("/kv:txn")},
		&api.ClientFrame{Type: api.FrameKVTxn}, t.req, len(t.req.Compare) > 0)
	if err != nil {
		return 0, fmt.Errorf("sdk: txn: %w", err)
	}
	var out api.KVTxnResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return 0, fmt.Errorf("sdk: txn: %w", err)
	}
	keys := make([]string, 0, len(t.req.Put)+len(t.req.Delete))
	for _, p := range t.req.Put {
		keys = append(keys, p.Key)
	}
	for _, d := range t.req.Delete {
		keys = append(keys, d.Key)
	}
	return out.Index, c.wroteKV(ctx, "txn", position(resp.Epoch(), out.Index), keys...)
}

// Txn is a transaction of the configuration store, built by its methods
// (each returns t, to chain them): compares, then puts and deletes. The
// zero value is an empty transaction. A Txn is not safe for concurrent
// use while it is being built.
//
//	_, err := c.Txn(ctx, new(sdk.Txn).
//		IfModIndex("app/rollout", cur.ModIndex).
//		Put("app/rollout", []byte("50")).
//		Delete("app/rollout-pause"))
type Txn struct {
	req api.KVTxnRequest
}

// IfModIndex makes the transaction hold only if the key's mod_index is n
// (0: the key does not exist).
func (t *Txn) IfModIndex(key string, n uint64) *Txn {
	t.req.Compare = append(t.req.Compare, api.KVCompare{Key: key, ModIndex: &n})
	return t
}

// IfVersion makes the transaction hold only if the key's version is n (0:
// the key does not exist).
func (t *Txn) IfVersion(key string, n uint64) *Txn {
	t.req.Compare = append(t.req.Compare, api.KVCompare{Key: key, Version: &n})
	return t
}

// IfExists makes the transaction hold only if the key exists.
func (t *Txn) IfExists(key string) *Txn {
	yes := true
	t.req.Compare = append(t.req.Compare, api.KVCompare{Key: key, Exists: &yes})
	return t
}

// IfMissing makes the transaction hold only if the key does not exist.
func (t *Txn) IfMissing(key string) *Txn {
	no := false
	t.req.Compare = append(t.req.Compare, api.KVCompare{Key: key, Exists: &no})
	return t
}

// IfValue makes the transaction hold only if the key exists with this
// value.
func (t *Txn) IfValue(key string, value []byte) *Txn {
	cp := api.KVCompare{Key: key}
	cp.Text, cp.Value = wireValue(value)
	t.req.Compare = append(t.req.Compare, cp)
	return t
}

// Put writes a key's value (nil is the empty value) when the transaction
// holds.
func (t *Txn) Put(key string, value []byte) *Txn {
	p := api.KVTxnPut{Key: key}
	p.Text, p.Value = wireValue(value)
	t.req.Put = append(t.req.Put, p)
	return t
}

// Delete deletes a key (one key, not a subtree) when the transaction
// holds.
func (t *Txn) Delete(key string) *Txn {
	t.req.Delete = append(t.req.Delete, api.KVTxnDelete{Key: key})
	return t
}

// Request is the transaction as the REST API takes it (POST
// /v1/tenants/{t}/kv:txn).
func (t *Txn) Request() api.KVTxnRequest { return t.req }

// check refuses what the servers would refuse for its shape alone, before
// anything is sent.
func (t *Txn) check() error {
	if n := len(t.req.Compare) + len(t.req.Put) + len(t.req.Delete); n > api.MaxTxnOps {
		return api.BadField("compare", "%d compares, puts and deletes; at most %d", n, api.MaxTxnOps)
	}
	written := map[string]bool{}
	for i, cp := range t.req.Compare {
		if err := api.ValidateKey(fmt.Sprintf("compare[%d].key", i), cp.Key); err != nil {
			return err
		}
	}
	for i, p := range t.req.Put {
		if err := api.ValidateKey(fmt.Sprintf("put[%d].key", i), p.Key); err != nil {
			return err
		}
		if written[p.Key] {
			return api.BadField(fmt.Sprintf("put[%d].key", i), "key %s is written twice", p.Key)
		}
		written[p.Key] = true
	}
	for i, d := range t.req.Delete {
		if err := api.ValidateKey(fmt.Sprintf("delete[%d].key", i), d.Key); err != nil {
			return err
		}
		if written[d.Key] {
			return api.BadField(fmt.Sprintf("delete[%d].key", i), "key %s is written twice", d.Key)
		}
		written[d.Key] = true
	}
	return nil
}

// wireValue is a value as the API takes it: bytes in "value", except the
// empty value, which goes as "text": "" (an empty "value" is omitted from
// the JSON, and a put without either is refused).
func wireValue(value []byte) (*string, []byte) {
	if len(value) == 0 {
		empty := ""
		return &empty, nil
	}
	return nil, value
}

// Decode decodes a key's value, JSON, into a T:
//
//	type Limits struct{ RPS int `json:"rps"` }
//	kv, _ := view.Get("app/limits")
//	limits, err := sdk.Decode[Limits](kv)
func Decode[T any](kv api.KV) (T, error) {
	var v T
	b := kv.Value
	if b == nil && kv.Text != nil {
		b = []byte(*kv.Text)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("sdk: decode %s: %w", kv.Key, err)
	}
	return v, nil
}

// putKV writes a key, with a compare on its mod_index (ifIndex not nil)
// and under a session (session not empty: an ephemeral key). It returns
// the key as written and the position it was applied at.
func (c *Client) putKV(ctx context.Context, key string, value []byte, ifIndex *uint64, session string) (api.KV, uint64, error) {
	if err := api.ValidateKey("key", key); err != nil {
		return api.KV{}, 0, err
	}
	body := api.KVPutRequest{IfIndex: ifIndex, Session: session}
	body.Text, body.Value = wireValue(value)
	resp, err := c.kvWrite(ctx, transport.Request{Method: http.MethodPut, Path: c.kvPath(key)},
		&api.ClientFrame{Type: api.FramePutKV, Key: key}, body, ifIndex != nil)
	if err != nil {
		return api.KV{}, 0, err
	}
	var out api.KVPutResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return api.KV{}, 0, err
	}
	return out.KV, position(resp.Epoch(), out.Index), nil
}

// deleteKV deletes a key if its mod_index is ifIndex, as kvWrite sends a
// write that compares.
func (c *Client) deleteKV(ctx context.Context, key string, ifIndex uint64) (uint64, error) {
	resp, err := c.kvWrite(ctx, transport.Request{Method: http.MethodDelete,
		Path: c.kvPath(key) + "?if_index=" + strconv.FormatUint(ifIndex, 10)},
		&api.ClientFrame{Type: api.FrameDeleteKV, Key: key, IfIndex: &ifIndex}, nil, true)
	if err != nil {
		return 0, err
	}
	var out api.KVDeleteResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return 0, err
	}
	return position(resp.Epoch(), out.Index), nil
}

// kvWrite sends a store write until it is answered for good or ctx ends:
// its first attempt on the Client's stream as frame f (when the Client has
// a stream and f is not nil; its body is filled here), the rest over REST
// (write_stream.go). One that compares (see the top of this file) is
// retried only as long as a retry cannot mistake the write's own success
// for a failed compare.
func (c *Client) kvWrite(ctx context.Context, req transport.Request, f *api.ClientFrame, body any, compares bool) (*transport.Response, error) {
	if body != nil {
		b, err := jsonMarshal(body)
		if err != nil {
			return nil, err
		}
		req.Body = b
	}
	var unknown error // the last attempt whose outcome is unknown
	if f != nil {
		f.Body = req.Body
		resp, err, final, lost := c.tryStream(ctx, *f)
		if final {
			return resp, err
		}
		if lost {
			unknown = err
		}
	}
	if !compares {
		req.Retry = writeRetry
		return c.tr.Do(ctx, req)
	}
	j := transport.NewJitter(writeRetry.Base, writeRetry.Cap)
	for {
		resp, err := c.tr.Do(ctx, req) // one attempt
		switch {
		case err == nil:
			return resp, nil
		case unknown != nil && errors.Is(err, api.ErrConflict):
			return nil, fmt.Errorf("%w: an attempt got %v, and a retry found the compare failing, perhaps on this write's own change (%v)",
				api.ErrTimeout, unknown, err)
		case ctx.Err() != nil && unknown != nil:
			return nil, unknownOutcome(ctx.Err(), unknown)
		case ctx.Err() != nil:
			return nil, err
		case !transport.Retryable(err):
			return nil, err
		}
		if mayHaveApplied(err) {
			unknown = err
		}
		req.Server = ""
		var ae *api.Error
		if errors.As(err, &ae) {
			if ae.RetryAfter > 0 {
				j.SetFloor(ae.RetryAfter)
			}
			if ae.Leader != "" && ae.Code != api.CodeStaleReplica {
				req.Server = ae.Leader
			}
		}
		if !sleep(ctx, j.NextBackOff()) {
			if unknown != nil {
				return nil, unknownOutcome(ctx.Err(), unknown)
			}
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// unknownOutcome is the error of a write that compares whose ctx ended
// after an attempt with an unknown outcome: it matches ErrTimeout, and
// the ctx's error.
func unknownOutcome(ctxErr, unknown error) error {
	return fmt.Errorf("%w: outcome unknown (%w; an attempt got %v)", api.ErrTimeout, ctxErr, unknown)
}

// mayHaveApplied reports whether a write that failed with err may still
// have been applied: no answer from a server that may have had the
// request (not a refused connection, not every breaker open), or a 504.
// A 503 or a 429 was not applied.
func mayHaveApplied(err error) bool {
	var ne *transport.NetError
	if errors.As(err, &ne) {
		return !errors.Is(err, syscall.ECONNREFUSED)
	}
	return errors.Is(err, api.ErrTimeout)
}

// wroteKV makes the Client's Config views of the keys a write (op) wrote
// at a position show it before the write returns (read-your-writes). The
// write has applied: a view that does not catch up within ctx is an error
// that says so.
func (c *Client) wroteKV(ctx context.Context, op string, pos uint64, keys ...string) error {
	for _, v := range c.viewsOf(keys) {
		if err := v.caughtUp(ctx, pos); err != nil {
			return fmt.Errorf("sdk: %s applied at index %d, but the Client's view of %q did not catch up: %w", op, indexOf(pos), v.prefix, err)
		}
	}
	return nil
}
