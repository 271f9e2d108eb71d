package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// Blocking reads of the store: woken by a change of their key or subtree
// only, and never missing one.

// blockingGet starts a blocking read and returns the channel its answer
// comes on.
func blockingGet(t *testing.T, c *servertest.Cluster, node int, tok, path string) <-chan *servertest.Response {
	out := make(chan *servertest.Response, 1)
	go func() {
		r, err := c.DoErr(context.Background(), node, tok, http.MethodGet, path, nil, nil)
		if err != nil {
			t.Error(err)
		}
		out <- r
	}()
	return out
}

func notYet(t *testing.T, ch <-chan *servertest.Response, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s answered early: %d %s", what, r.Status, r.Body)
	case <-time.After(d):
	}
}

func answered(t *testing.T, ch <-chan *servertest.Response, what string) *servertest.Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not answer", what)
		return nil
	}
}

// TestKVBlocking: a blocking read of a subtree answers at a put under it,
// not at a put of a sibling or of a key with the same string prefix; a
// blocking read of a key answers at its own change only (its delete: 404);
// one of a missing key at its creation.
func TestKVBlocking(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	put := func(key, value string) uint64 {
		t.Helper()
		r := kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", key), []byte(value), nil)
		if r.Status >= 300 {
			t.Fatalf("put %s = %d %s", key, r.Status, r.Body)
		}
		n, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
		return n
	}
	put("app/a", "1")
	put("app/b", "1")
	put("other", "1")
	var list api.KVListResponse
	c.Do(2, tok, http.MethodGet, kvPath("acme", "app")+"?prefix=true&consistent=true", nil).JSON(t, &list)
	tree := blockingGet(t, c, 2, tok, fmt.Sprintf("%s?prefix=true&index=%d&wait=20s", kvPath("acme", "app"), list.Index))
	key := blockingGet(t, c, 3, tok, fmt.Sprintf("%s?index=%d&wait=20s", kvPath("acme", "app/a"), list.Index))
	missing := blockingGet(t, c, 3, tok, fmt.Sprintf("%s?index=%d&wait=20s", kvPath("acme", "app/new"), list.Index))
	// The reads are waiting before the writes below: a missing key waits
	// on its nearest ancestor subtree's index (an upper bound), so a read
	// of app/new that arrived after app/b's write would rightly answer at
	// once.
	servertest.Eventually(t, 5*time.Second, "the three reads to wait", func() bool {
		return usage(t, c, 2, "acme").Watchers == 1 && usage(t, c, 3, "acme").Watchers == 2
	})
	put("other", "2")
	put("app-x", "1")
	put("apple/x", "1")
	put("app/b", "2") // the subtree's, not app/a's nor app/new's
	r := answered(t, tree, "the subtree read")
	var got api.KVListResponse
	r.JSON(t, &got)
	if got.Index <= list.Index || kvKeys(got.KVs) != "app/a app/b" || string(got.KVs[1].Value) != "2" {
		t.Fatalf("the subtree read answered %s", r.Body)
	}
	notYet(t, key, 300*time.Millisecond, "the read of app/a")
	notYet(t, missing, 0, "the read of app/new")
	at := put("app/new", "1")
	r = answered(t, missing, "the read of app/new")
	var kv api.KVResponse
	r.JSON(t, &kv)
	if kv.KV.ModIndex != at {
		t.Fatalf("the read of a created key answered %s", r.Body)
	}
	notYet(t, key, 0, "the read of app/a")
	if r := c.Do(1, tok, http.MethodDelete, kvPath("acme", "app/a"), nil); r.Status != http.StatusOK {
		t.Fatalf("delete = %d %s", r.Status, r.Body)
	}
	r = answered(t, key, "the read of app/a")
	wantErr(t, r, http.StatusNotFound, api.CodeNotFound)

	// A wait that ends with nothing new answers the same content.
	start := time.Now()
	r = c.Do(2, tok, http.MethodGet, fmt.Sprintf("%s?prefix=true&index=%s&wait=300ms", kvPath("acme", "app"), r.Header.Get(api.HeaderIndex)), nil)
	if took := time.Since(start); r.Status != http.StatusOK || took < 300*time.Millisecond {
		t.Fatalf("a wait with nothing new = %d after %v", r.Status, took)
	}
}

// TestKVWatchOrder: under a burst of writes from every node, a reader
// that blocks on a subtree from each answer's index sees indexes that
// only increase, and each answer is exactly the subtree as of its index:
// every write acknowledged at or before it, none after — no gap, no
// reordering.
func TestKVWatchOrder(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 10_000, RequestsPerSecond: 10_000, Burst: 10_000})
	const writers, writes, keys = 3, 80, 4
	type ack struct {
		key, value string
		index      uint64
	}
	var (
		mu   sync.Mutex
		acks []ack
	)
	type answer struct {
		index uint64
		kvs   []api.KV
	}
	var answers []answer
	done := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		index := uint64(0)
		for {
			r, err := c.DoErr(context.Background(), 2, tok, http.MethodGet,
				fmt.Sprintf("%s?prefix=true&index=%d&wait=500ms", kvPath("acme", "burst"), index), nil, nil)
			if err != nil || r.Status != http.StatusOK {
				t.Errorf("blocking read: %v %v", err, r)
				return
			}
			var l api.KVListResponse
			r.JSON(t, &l)
			if l.Index > index {
				answers = append(answers, answer{l.Index, l.KVs})
			}
			index = l.Index
			select {
			case <-done:
				mu.Lock()
				last := uint64(0)
				for _, a := range acks {
					last = max(last, a.index)
				}
				mu.Unlock()
				if index >= last {
					return
				}
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				key := fmt.Sprintf("burst/w%d/k%d", w, i%keys)
				value := fmt.Sprintf("%d-%d", w, i)
				r, err := c.DoErr(context.Background(), w+1, tok, http.MethodPut, kvPath("acme", key), []byte(value), nil)
				if err != nil || r.Status >= 300 {
					t.Errorf("put: %v %v", err, r)
					return
				}
				n, _ := strconv.ParseUint(r.Header.Get(api.HeaderIndex), 10, 64)
				mu.Lock()
				acks = append(acks, ack{key, value, n})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(done)
	<-readerDone
	if t.Failed() {
		return
	}
	if len(answers) < 3 {
		t.Fatalf("%d answers to a reader under %d writes: it was not woken by them", len(answers), writers*writes)
	}
	seen := map[string]uint64{}
	for i, a := range answers {
		if i > 0 && a.index <= answers[i-1].index {
			t.Fatalf("answer %d at index %d after one at %d", i, a.index, answers[i-1].index)
		}
		want := map[string]ack{}
		for _, k := range acks {
			if k.index <= a.index && k.index > want[k.key].index {
				want[k.key] = k
			}
		}
		if len(a.kvs) != len(want) {
			t.Fatalf("answer at %d holds %d keys; %d were written by then", a.index, len(a.kvs), len(want))
		}
		for _, kv := range a.kvs {
			w := want[kv.Key]
			if string(kv.Value) != w.value || kv.ModIndex != w.index {
				t.Fatalf("answer at %d: %s = %q at %d, the last write by then was %q at %d", a.index, kv.Key, kv.Value, kv.ModIndex, w.value, w.index)
			}
			if kv.ModIndex < seen[kv.Key] {
				t.Fatalf("%s went back from mod_index %d to %d", kv.Key, seen[kv.Key], kv.ModIndex)
			}
			seen[kv.Key] = kv.ModIndex
		}
	}
	t.Logf("%d writes from %d nodes, %d answers to one blocking reader", writers*writes, writers, len(answers))
}

// TestKVWatchersQuota: a blocking read of the store counts against
// max_watchers as a service's does.
func TestKVWatchersQuota(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{MaxWatchers: 1})
	wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", "a"), []byte("1"), nil), http.StatusCreated)
	_, r := kvGet(t, c, 1, tok, kvPath("acme", "a"))
	idx := r.Header.Get(api.HeaderIndex)
	first := blockingGet(t, c, 1, tok, kvPath("acme", "a")+"?wait=10s&index="+idx)
	servertest.Eventually(t, 5*time.Second, "the first watcher to count", func() bool { return usage(t, c, 1, "acme").Watchers == 1 })
	wantQuota(t, c.Do(1, tok, http.MethodGet, kvPath("acme", "b")+"?prefix=true&wait=10s&index="+idx, nil), "max_watchers", 1, 1)
	wantStatus(t, kvDo(t, c, 1, tok, http.MethodPut, kvPath("acme", "a"), []byte("2"), nil), http.StatusOK)
	wantStatus(t, answered(t, first, "the first watcher"), http.StatusOK)
}
