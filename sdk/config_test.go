package sdk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestConfig runs the configuration store's SDK behaviours that do not
// hurt the servers on one shared cluster, each in a tenant of its own.
func TestConfig(t *testing.T) {
	c := sdktest.Start(t)
	tests := []behaviour{
		{"FollowsOtherClients", testConfigFollows, api.Quotas{}},
		{"Subtree", testConfigSubtree, api.Quotas{}},
		{"ReadYourWrites", testConfigReadYourWrites, api.Quotas{}},
		{"OneViewPerPrefix", testConfigOneView, api.Quotas{}},
		{"OnChange", testConfigOnChange, api.Quotas{}},
		{"Pages", testConfigPages, api.Quotas{}},
		{"CASRace", testConfigCASRace, api.Quotas{}},
		{"Txn", testConfigTxn, api.Quotas{}},
		{"Decode", testConfigDecode, api.Quotas{}},
	}
	// Each behaviour twice: views by blocking reads, and on the client
	// stream (watch_kv).
	runBehaviours(t, c, "k", tests)
}

func view(t *testing.T, cl *sdk.Client, prefix string) *sdk.Config {
	t.Helper()
	v, err := cl.Config(ctxT(t, 10*time.Second), prefix)
	if err != nil {
		t.Fatalf("Config(%q): %v", prefix, err)
	}
	return v
}

func put(t *testing.T, cl *sdk.Client, key, value string) api.KV {
	t.Helper()
	kv, err := cl.Put(ctxT(t, 10*time.Second), key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	return kv
}

// value is a key's value in a view, and "" with false when it is missing.
func value(v *sdk.Config, key string) (string, bool) {
	kv, ok := v.Get(key)
	return string(kv.Value), ok
}

// testConfigFollows: a view sees another Client's puts and deletes, of
// keys that exist before it starts and after.
func testConfigFollows(t *testing.T, tn *tenant) {
	writer := tn.connect(t)
	put(t, writer, "app/db/url", "postgres://a")
	reader := tn.connect(t)
	v := view(t, reader, "app")
	// The first fill is linearizable: the earlier put is in it.
	if got, ok := value(v, "app/db/url"); !ok || got != "postgres://a" {
		t.Fatalf("first fill: app/db/url = %q, %v; want postgres://a", got, ok)
	}
	put(t, writer, "app/flags/dark", "on")
	eventually(t, 5*time.Second, "the view to see another Client's put", func() bool {
		got, _ := value(v, "app/flags/dark")
		return got == "on"
	})
	if err := writer.Delete(ctxT(t, 10*time.Second), "app/db/url"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the view to see another Client's delete", func() bool {
		_, ok := v.Get("app/db/url")
		return !ok
	})
	if got := v.Keys(); !slices.Equal(got, []string{"app/flags/dark"}) {
		t.Fatalf("Keys() = %v, want [app/flags/dark]", got)
	}
	if v.Stale() || v.Index() == 0 {
		t.Fatalf("Stale() = %v, Index() = %d; want a fresh view", v.Stale(), v.Index())
	}
	// The view's index never goes back while it follows.
	last := v.Index()
	for i := range 10 {
		put(t, writer, "app/n", fmt.Sprint(i))
		if idx := v.Index(); idx < last {
			t.Fatalf("Index() went back: %d after %d", idx, last)
		} else {
			last = idx
		}
	}
	eventually(t, 5*time.Second, "the last of a burst", func() bool {
		got, _ := value(v, "app/n")
		return got == "9"
	})
	if watched, _, _ := sdk.StreamStats(reader); tn.mode == streamMode && watched == 0 {
		t.Fatal("the view is not followed on the client stream")
	}
}

// testConfigSubtree: a view holds its subtree — the prefix's own key and
// the keys under it — and never a key beside it, whatever is written.
func testConfigSubtree(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	v := view(t, cl, "app/cfg")
	all := view(t, cl, "")
	inside := []string{"app/cfg", "app/cfg/a", "app/cfg/a/b/c"}
	outside := []string{"app", "app/cfgx", "app/cfg-old/a", "app/cf", "apps/cfg/a", "other"}
	for _, k := range append(slices.Clone(outside), inside...) {
		put(t, cl, k, k)
	}
	// Read-your-writes: both views hold every put now.
	if got := v.Keys(); !slices.Equal(got, inside) {
		t.Fatalf("view of app/cfg: Keys() = %v, want %v", got, inside)
	}
	for _, k := range outside {
		if _, ok := v.Get(k); ok {
			t.Fatalf("view of app/cfg holds %s", k)
		}
	}
	want := slices.Sorted(slices.Values(append(slices.Clone(outside), inside...)))
	if got := all.Keys(); !slices.Equal(got, want) {
		t.Fatalf("view of every key: Keys() = %v, want %v", got, want)
	}
	// Writes beside the subtree do not change the view.
	before := v.Snapshot()
	for _, k := range outside {
		put(t, cl, k, "again")
	}
	if after := v.Snapshot(); !slices.Equal(after.Keys(), before.Keys()) {
		t.Fatalf("writes beside the subtree changed the view: %v", after.Keys())
	}
	if _, err := cl.Config(ctxT(t, time.Second), "app/"); !errors.Is(err, sdk.ErrBadRequest) {
		t.Fatalf(`Config("app/") = %v, want ErrBadRequest`, err)
	}
}

// testConfigReadYourWrites: when a write returns, the Client's views of
// its keys show it, whichever server took it and whichever the views read
// from.
func testConfigReadYourWrites(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	v := view(t, cl, "ryw")
	ctx := ctxT(t, 30*time.Second)
	for i := range 10 {
		key := fmt.Sprintf("ryw/k%d", i%3)
		kv, err := cl.Put(ctx, key, []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := v.Get(key); !ok || got.ModIndex != kv.ModIndex || string(got.Value) != fmt.Sprint(i) {
			t.Fatalf("Put(%s) returned at %d; the view holds %+v", key, kv.ModIndex, got)
		}
		kv, err = cl.CompareAndSet(ctx, key, []byte("cas"), kv.ModIndex)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := v.Get(key); got.ModIndex != kv.ModIndex {
			t.Fatalf("CompareAndSet(%s) returned at %d; the view holds %d", key, kv.ModIndex, got.ModIndex)
		}
	}
	if err := cl.Delete(ctx, "ryw/k0"); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Get("ryw/k0"); ok {
		t.Fatal("Delete returned; the view still holds the key")
	}
	if _, err := cl.Txn(ctx, new(sdk.Txn).Put("ryw/t1", []byte("1")).Delete("ryw/k1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Get("ryw/k1"); ok {
		t.Fatal("Txn returned; the view still holds the key it deleted")
	}
	if got, _ := value(v, "ryw/t1"); got != "1" {
		t.Fatal("Txn returned; the view does not hold the key it put")
	}
	// A view opened after a write holds it (a linearizable first fill).
	put(t, cl, "later/a", "x")
	if got, _ := value(view(t, cl, "later"), "later/a"); got != "x" {
		t.Fatal("a view opened after a Put misses it")
	}
}

// testConfigOneView: asking again for a prefix returns the same view;
// Watch yields the current snapshot, then changes, in index order.
func testConfigOneView(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	v := view(t, cl, "w")
	if again := view(t, cl, "w"); again != v {
		t.Fatal("Config asked again returned another view")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snaps := make(chan sdk.ConfigSnapshot, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range v.Watch(ctx) {
			snaps <- s
			if _, ok := s.Get("w/b"); ok {
				return
			}
		}
	}()
	if first := <-snaps; len(first.KVs) != 0 || first.Prefix != "w" {
		t.Fatalf("first snapshot %+v, want the empty subtree", first)
	}
	writer := tn.connect(t)
	put(t, writer, "w/a", "1")
	put(t, writer, "w/b", "2")
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Watch did not yield a snapshot with w/b")
	}
	close(snaps)
	var last uint64
	for s := range snaps {
		if s.Index < last {
			t.Fatalf("snapshot index went back: %d after %d", s.Index, last)
		}
		last = s.Index
	}
	if err := v.Sync(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if v.Index() < last {
		t.Fatalf("after Sync, Index() = %d, below %d seen before", v.Index(), last)
	}
}

// testConfigOnChange: OnChange is called with the current snapshot, then
// each change, until stop.
func testConfigOnChange(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	put(t, cl, "flags/beta", "off")
	v := view(t, cl, "flags")
	var mu sync.Mutex
	var seen []string
	stop := v.OnChange(func(s sdk.ConfigSnapshot) {
		kv, _ := s.Get("flags/beta")
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 || seen[len(seen)-1] != string(kv.Value) {
			seen = append(seen, string(kv.Value))
		}
	})
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	eventually(t, 5*time.Second, "the current value", func() bool { return slices.Equal(got(), []string{"off"}) })
	other := tn.connect(t)
	put(t, other, "flags/beta", "on")
	eventually(t, 5*time.Second, "the change", func() bool { return slices.Equal(got(), []string{"off", "on"}) })
	stop()
	put(t, other, "flags/beta", "off")
	// Once a second callback, registered after the change, has seen it,
	// the stopped one has had as much chance to be called.
	later := make(chan struct{})
	var once sync.Once
	stop2 := v.OnChange(func(s sdk.ConfigSnapshot) {
		if kv, _ := s.Get("flags/beta"); string(kv.Value) == "off" {
			once.Do(func() { close(later) })
		}
	})
	defer stop2()
	select {
	case <-later:
	case <-ctxT(t, 5*time.Second).Done():
		t.Fatal("a second OnChange never saw the change")
	}
	if s := got(); !slices.Equal(s, []string{"off", "on"}) {
		t.Fatalf("after stop, fn saw %v", s)
	}
}

// testConfigPages: a subtree of more than a page (about 1 MiB of values)
// is read whole, and followed.
func testConfigPages(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	big := bytes.Repeat([]byte("x"), 60<<10)
	var want []string
	for i := range 24 { // 1.4 MiB: two pages at least
		key := fmt.Sprintf("big/k%02d", i)
		if _, err := cl.Put(ctxT(t, 10*time.Second), key, big); err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
	}
	reader := tn.connect(t)
	v := view(t, reader, "big")
	if got := v.Keys(); !slices.Equal(got, want) {
		t.Fatalf("Keys() = %v, want %v", got, want)
	}
	put(t, cl, "big/k00", "first page")
	put(t, cl, "big/k23", "last page")
	eventually(t, 5*time.Second, "both pages to follow", func() bool {
		a, _ := value(v, "big/k00")
		b, _ := value(v, "big/k23")
		return a == "first page" && b == "last page" && len(v.Keys()) == 24
	})
}

// testConfigCASRace: clients on each node compare-and-set one key from the
// same mod_index at once: exactly one wins, every loser gets ErrConflict
// with the winner's mod_index, and every view ends with the winner's value.
func testConfigCASRace(t *testing.T, tn *tenant) {
	nodes := tn.c.Servers.Addrs()
	var clients []*sdk.Client
	for i := range 6 {
		clients = append(clients, tn.connect(t, sdk.WithServers("http://"+nodes[i%len(nodes)]), sdk.WithServerSync(0)))
	}
	for round := range 5 {
		key := fmt.Sprintf("race/r%d", round)
		start := put(t, clients[0], key, "start")
		type result struct {
			who int
			kv  api.KV
			err error
		}
		results := make(chan result, len(clients))
		gate := make(chan struct{})
		for i, cl := range clients {
			go func() {
				<-gate
				kv, err := cl.CompareAndSet(ctxT(t, 20*time.Second), key, []byte(fmt.Sprint(i)), start.ModIndex)
				results <- result{i, kv, err}
			}()
		}
		close(gate)
		var winners []result
		var losers []result
		for range clients {
			r := <-results
			switch {
			case r.err == nil:
				winners = append(winners, r)
			case errors.Is(r.err, sdk.ErrConflict):
				losers = append(losers, r)
			default:
				t.Fatalf("client %d: CompareAndSet = %v, want success or ErrConflict", r.who, r.err)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners, want exactly one", round, len(winners))
		}
		w := winners[0]
		for _, l := range losers {
			var ae *api.Error
			if !errors.As(l.err, &ae) || ae.Conflict == nil || ae.Conflict.Key != key || ae.Conflict.ModIndex < w.kv.ModIndex {
				t.Fatalf("loser %d: %v (conflict %+v); want the key's mod_index, at least the winner's %d", l.who, l.err, ae, w.kv.ModIndex)
			}
		}
		got, err := clients[1].Get(ctxT(t, 10*time.Second), key)
		if err != nil || string(got.Value) != fmt.Sprint(w.who) || got.ModIndex != w.kv.ModIndex {
			t.Fatalf("after the race: %+v, %v; want the winner %d's write at %d", got, err, w.who, w.kv.ModIndex)
		}
	}
	if _, err := clients[0].CompareAndSet(ctxT(t, 10*time.Second), "race/new", []byte("x"), 0); err != nil {
		t.Fatalf("CompareAndSet of a missing key from 0 = %v", err)
	}
	_, err := clients[1].CompareAndSet(ctxT(t, 10*time.Second), "race/new", []byte("y"), 0)
	var ae *api.Error
	if !errors.Is(err, sdk.ErrConflict) || !errors.As(err, &ae) || ae.Conflict == nil || ae.Conflict.ModIndex == 0 {
		t.Fatalf("CompareAndSet of an existing key from 0 = %v, want ErrConflict with its mod_index", err)
	}
}

// testConfigTxn: a transaction whose compare fails changes nothing; one
// whose compares hold applies whole, at one index.
func testConfigTxn(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	v := view(t, cl, "roll")
	ctx := ctxT(t, 20*time.Second)
	a := put(t, cl, "roll/a", "1")
	put(t, cl, "roll/b", "1")
	before := v.Snapshot()
	_, err := cl.Txn(ctx, new(sdk.Txn).
		IfModIndex("roll/a", a.ModIndex).
		IfMissing("roll/b"). // fails
		Put("roll/a", []byte("2")).
		Put("roll/c", []byte("2")).
		Delete("roll/b"))
	var ae *api.Error
	if !errors.Is(err, sdk.ErrConflict) || !errors.As(err, &ae) || ae.Conflict == nil || ae.Conflict.Key != "roll/b" ||
		ae.Conflict.Compare == nil || *ae.Conflict.Compare != 1 {
		t.Fatalf("Txn with a failing compare = %v (%+v), want ErrConflict naming compare 1 on roll/b", err, ae)
	}
	if err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := v.Snapshot(); !slices.EqualFunc(after.KVs, before.KVs, func(x, y api.KV) bool {
		return x.Key == y.Key && x.ModIndex == y.ModIndex
	}) {
		t.Fatalf("a failed Txn changed the store: %v, was %v", after.Keys(), before.Keys())
	}
	idx, err := cl.Txn(ctx, new(sdk.Txn).
		IfModIndex("roll/a", a.ModIndex).
		IfExists("roll/b").
		IfValue("roll/b", []byte("1")).
		IfVersion("roll/c", 0).
		Put("roll/a", []byte("2")).
		Put("roll/c", nil).
		Delete("roll/b"))
	if err != nil {
		t.Fatal(err)
	}
	snap := v.Snapshot()
	if got := snap.Keys(); !slices.Equal(got, []string{"roll/a", "roll/c"}) {
		t.Fatalf("after the Txn: %v, want roll/a and roll/c", got)
	}
	ka, _ := snap.Get("roll/a")
	kc, _ := snap.Get("roll/c")
	if ka.ModIndex != idx || kc.ModIndex != idx || string(ka.Value) != "2" || len(kc.Value) != 0 {
		t.Fatalf("after the Txn at %d: %+v %+v, want both written at it", idx, ka, kc)
	}
	// Refused before anything is sent.
	if _, err := cl.Txn(ctx, new(sdk.Txn).Put("roll/a", nil).Delete("roll/a")); !errors.Is(err, sdk.ErrBadRequest) {
		t.Fatalf("Txn writing a key twice = %v, want ErrBadRequest", err)
	}
}

// testConfigDecode: JSON values decode into a type, from a view or a Get.
func testConfigDecode(t *testing.T, tn *tenant) {
	type limits struct {
		RPS   int      `json:"rps"`
		Burst int      `json:"burst"`
		Zones []string `json:"zones"`
	}
	cl := tn.connect(t)
	put(t, cl, "svc/limits", `{"rps": 100, "burst": 20, "zones": ["eu-1"]}`)
	put(t, cl, "svc/broken", `{"rps": `)
	v := view(t, cl, "svc")
	kv, _ := v.Get("svc/limits")
	got, err := sdk.Decode[limits](kv)
	if err != nil || got.RPS != 100 || got.Burst != 20 || !slices.Equal(got.Zones, []string{"eu-1"}) {
		t.Fatalf("Decode = %+v, %v", got, err)
	}
	kv, err = cl.Get(ctxT(t, 10*time.Second), "svc/limits")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sdk.Decode[map[string]any](kv); err != nil || n["rps"] != 100.0 {
		t.Fatalf("Decode of Get = %v, %v", n, err)
	}
	kv, _ = v.Get("svc/broken")
	if _, err := sdk.Decode[limits](kv); err == nil || !strings.Contains(err.Error(), "svc/broken") {
		t.Fatalf("Decode of bad JSON = %v, want an error naming the key", err)
	}
	if _, err := cl.Get(ctxT(t, 10*time.Second), "svc/missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get of a missing key = %v, want ErrNotFound", err)
	}
}

// TestConfigOutage: with every server down a view keeps its values,
// marked stale; when the servers return it catches up.
func TestConfigOutage(t *testing.T) {
	c := sdktest.Start(t)
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	cl := tn.connect(t)
	for i := range 3 {
		put(t, cl, fmt.Sprintf("cfg/k%d", i), "before")
	}
	v := view(t, cl, "cfg")
	var mu sync.Mutex
	var calls []sdk.ConfigSnapshot
	stop := v.OnChange(func(s sdk.ConfigSnapshot) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, s)
	})
	defer stop()

	c.Servers.Stop()
	eventually(t, 15*time.Second, "the view to be marked stale", v.Stale)
	if got := v.Keys(); len(got) != 3 {
		t.Fatalf("a stale view holds %v, want its three keys", got)
	}
	if got, _ := value(v, "cfg/k1"); got != "before" {
		t.Fatalf("a stale view's value = %q, want the last known", got)
	}
	if _, err := cl.Put(ctxT(t, time.Second), "cfg/k1", []byte("x")); err == nil {
		t.Fatal("Put with every server down succeeded")
	}
	if err := v.Sync(ctxT(t, time.Second)); err == nil {
		t.Fatal("Sync with every server down succeeded")
	}
	if got := v.Keys(); len(got) != 3 || !v.Stale() {
		t.Fatalf("after failed writes and syncs the view holds %v, stale %v", got, v.Stale())
	}

	restartAll(c)
	writer := tn.connect(t)
	put(t, writer, "cfg/k1", "after")
	eventually(t, 20*time.Second, "the view to catch up", func() bool {
		got, _ := value(v, "cfg/k1")
		return got == "after" && !v.Stale()
	})
	mu.Lock()
	defer mu.Unlock()
	var sawStale bool
	for _, s := range calls {
		if len(s.KVs) != 3 {
			t.Fatalf("OnChange saw %v: a view is never emptied", s.Keys())
		}
		sawStale = sawStale || s.Stale
	}
	if !sawStale {
		t.Fatal("OnChange never saw the view stale")
	}
}
