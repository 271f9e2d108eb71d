package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
)

// kvWatchWait is how long one blocking read of a watch waits for a change
// before it is sent again (the server adds up to 1/16 of it).
const kvWatchWait = 60 * time.Second

// kvEvent is one line of `rafting kv watch -o json`.
type kvEvent struct {
	Type string `json:"type"` // "put" or "delete"
	Key  string `json:"key"`
	// Index is a put's mod_index; for a delete, the index of the read
	// that found the key gone (the delete's own is at or before it).
	Index uint64  `json:"index"`
	KV    *api.KV `json:"kv,omitempty"` // a put's key as written
}

// watch prints every change of a key or a subtree from now on, until ctx
// ends (SIGINT, SIGTERM), which is a clean exit.
//
// It is a loop of blocking reads (?index=&wait=): each answers the key,
// or the whole subtree a page at a time, once something in it changed
// past the index of the read before, and the change printed is the
// difference between the two answers. So every key's latest state is
// printed and none is missed, across a server's failure too (the next
// read diffs against the last one seen), but several writes of one key
// between two reads print as the last of them, and a key deleted and
// written again as a put. The client stream's watch_kv sends every change;
// this command is built on the REST API that any server version answers.
func (k *kvCmd) watch(ctx context.Context, pos []string) error {
	prefix, pageSize := &k.prefix, &k.pageSize
	key := ""
	if len(pos) == 1 {
		key = pos[0]
	}
	if !*prefix && key == "" {
		return usageError{"usage: rafting kv watch KEY (or --prefix [KEY] to watch a subtree)"}
	}
	if err := checkKey(key, *prefix); err != nil {
		return err
	}
	if *pageSize != 0 && (*pageSize < 1 || *pageSize > api.MaxKVPage || !*prefix) {
		return usageError{fmt.Sprintf("--page-size %d: pages a --prefix watch's reads; want 1 to %d", *pageSize, api.MaxKVPage)}
	}
	if err := k.connect(); err != nil {
		return err
	}
	// The REST client's 30 s bound would cut every blocking read.
	c := *k.c
	hc := *c.HTTP
	hc.Timeout = kvWatchWait + kvWatchWait/16 + 30*time.Second
	c.HTTP = &hc
	w := &kvWatcher{k: k, c: &c, key: key, prefix: *prefix, pageSize: *pageSize}
	what := key
	if *prefix {
		what = "subtree " + cmp.Or(key, "(every key)")
	}

	known, index, err := w.read(ctx, 0)
	index = max(index, 1) // 0 would read at once again
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", what, err)
	}
	fmt.Fprintf(k.stderr, "watching %s from index %d (%d keys); interrupt to end\n", what, index, len(known))
	// After a read no server answered: wait 100 ms, doubling to 5 s, and
	// read again, for as long as it takes.
	wait := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	failing := ""
	for {
		now, next, err := w.read(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var e *api.Error
			if errors.As(err, &e) && !e.Code.Retryable() {
				return fmt.Errorf("watch %s: %w", what, err)
			}
			// No server answered: wait and read again; the next
			// answer is diffed against the last one, so nothing is
			// missed meanwhile.
			if msg := err.Error(); msg != failing {
				fmt.Fprintf(k.stderr, "rafting: watch %s: %s; retrying\n", what, printable(msg))
				failing = msg
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait.NextBackOff()):
			}
			continue
		}
		if failing != "" {
			fmt.Fprintf(k.stderr, "rafting: watch %s: resumed at index %d\n", what, next)
			failing = ""
			wait.Reset()
		}
		if err := w.print(known, now, next); err != nil {
			return err
		}
		known, index = now, max(index, next)
	}
}

// kvWatcher reads what a watch watches.
type kvWatcher struct {
	k        *kvCmd
	c        *restclient.Client // k's, with a longer timeout
	key      string
	prefix   bool
	pageSize int
}

// read answers the watched keys and the index to block on next: at once
// and consistent for index 0, else once something changed past index (or
// the wait passed).
func (w *kvWatcher) read(ctx context.Context, index uint64) (map[string]api.KV, uint64, error) {
	q := url.Values{}
	if index == 0 {
		q.Set("consistent", "true")
	} else {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", kvWatchWait.String())
	}
	kvs := map[string]api.KV{}
	if w.prefix {
		var at uint64
		err := w.k.list(ctx, w.c, w.key, q, w.pageSize, func(page api.KVListResponse, first bool) error {
			if first {
				at = page.Index
			}
			for _, kv := range page.KVs {
				kvs[kv.Key] = kv
			}
			return nil
		})
		return kvs, at, err
	}
	reply, err := w.c.Send(ctx, restclient.Request{Method: http.MethodGet, Path: withQuery(w.k.keyPath(w.key), q)})
	if err != nil {
		if at, ok := reply.Index(); ok && errors.Is(err, api.ErrNotFound) {
			return kvs, at, nil // no such key (now)
		}
		return nil, 0, err
	}
	var r api.KVResponse
	if err := json.Unmarshal(reply.Body, &r); err != nil {
		return nil, 0, fmt.Errorf("watch %s: the answer is not a key: %w", w.key, err)
	}
	kvs[r.KV.Key] = r.KV
	return kvs, r.Index, nil
}

// print writes the changes from old to now, read at index: the puts in
// the order they were written, then the deletes by key (their order
// relative to the puts is not known). One line each: "PUT KEY MOD_INDEX
// VALUE" or "DELETE KEY INDEX", escaped; with -o json, a kvEvent.
func (w *kvWatcher) print(old, now map[string]api.KV, index uint64) error {
	var puts []api.KV
	for key, kv := range now {
		if o, ok := old[key]; !ok || o.ModIndex != kv.ModIndex {
			puts = append(puts, kv)
		}
	}
	slices.SortFunc(puts, func(a, b api.KV) int { return cmp.Or(cmp.Compare(a.ModIndex, b.ModIndex), cmp.Compare(a.Key, b.Key)) })
	var dels []string
	for key := range old {
		if _, ok := now[key]; !ok {
			dels = append(dels, key)
		}
	}
	slices.Sort(dels)
	if len(puts)+len(dels) == 0 {
		return nil
	}
	jsonOut := w.k.a.json()
	var b bytes.Buffer
	line := func(ev kvEvent) error {
		if jsonOut {
			j, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			b.Write(jsonPrintable(j))
			b.WriteByte('\n')
			return nil
		}
		if ev.KV != nil {
			fmt.Fprintf(&b, "PUT %s %d %s\n", printable(ev.Key), ev.Index, printable(string(ev.KV.Value)))
		} else {
			fmt.Fprintf(&b, "DELETE %s %d\n", printable(ev.Key), ev.Index)
		}
		return nil
	}
	for i := range puts {
		kv := puts[i].WithText()
		if err := line(kvEvent{Type: "put", Key: kv.Key, Index: kv.ModIndex, KV: kv}); err != nil {
			return err
		}
	}
	for _, key := range dels {
		if err := line(kvEvent{Type: "delete", Key: key, Index: index}); err != nil {
			return err
		}
	}
	_, err := w.k.stdout.Write(b.Bytes())
	return err
}
