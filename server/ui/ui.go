package ui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every /ui answer: the page's own
// script and style sheet, requests to its own origin, nothing inline,
// no eval, no frames, no form sent anywhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Identity is who a feed's token authenticated as.
type Identity struct {
	Admin    bool   // the admin token, or the read-only admin token
	ReadOnly bool   // the read-only admin token
	Tenant   string // a tenant token's tenant
}

// key is whose feeds MaxFeeds counts together.
func (id Identity) key() string {
	if id.Tenant != "" {
		return "tenant:" + id.Tenant
	}
	return id.kind()
}

// acquire takes one of key's MaxFeeds; false when it holds them all.
func (d *Dashboard) acquire(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open[key] >= MaxFeeds {
		return false
	}
	d.open[key]++
	return true
}

func (d *Dashboard) release(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.open[key]--; d.open[key] <= 0 {
		delete(d.open, key)
	}
}

// Secure sets the headers of every /ui answer on h's answers, its
// refusals included (the feed's route answers 401, 429 before Feed runs).
func Secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w.Header())
		h.ServeHTTP(w, r)
	})
}

func (id Identity) kind() string {
	switch {
	case id.ReadOnly:
		return "read-only"
	case id.Admin:
		return "admin"
	}
	return "tenant"
}

// Intervals of the feed's polls, and MaxWatched, how many services of a
// tenant it follows with a blocking query each (the others are listed,
// with their counts, from the service list).
const (
	ClusterEvery  = time.Second
	ServicesEvery = 500 * time.Millisecond
	SessionsEvery = time.Second
	PingEvery     = 5 * time.Second
	MaxWatched    = 64
)

// MaxFeeds is how many feeds one token's identity (a tenant, the admin,
// the read-only admin) may hold open on a node at once: a browser tab
// each. Past it a feed is refused 429. A feed costs a goroutine per
// followed service and a few requests a second for as long as it is
// open, and a connection of HTTP/2 carries hundreds of them: without a
// cap one tenant's open feeds, each a stream that costs its client
// nothing, would multiply the node's goroutines and in-process requests
// without bound.
const MaxFeeds = 16

// writeTimeout: a write of the feed the browser does not take within it
// ends the feed. A client that stops reading would otherwise hold the
// feed, its queued events and every service answer waiting behind them
// (up to the tenant's answer bytes a second, without end) for as long as
// its connection stays open.
var writeTimeout = 10 * time.Second

// FeedBytesPerSecond paces a feed's service answers: after one of n
// bytes is sent, the feed's watches ask again only once n/FeedBytesPerSecond
// has passed (shared by its watches), so changes that come faster are sent
// together, as the service's state when the wait ends. A service's answer
// is the whole service, and a change to it of a hundred bytes (one
// instance's weight) is sent as all of it: unpaced, a tenant's small
// writes to a large service made every feed that follows it (the admin's
// and the read-only token's, charged to no one) re-read and send the
// service as fast as the node could encode it, 50 MB a second per tab for
// a 0.9 MB service (TestRedTeam3AdminFeedAmplifiesTenantWrites). A page
// cannot show more than this anyway.
const FeedBytesPerSecond = 1 << 20

// feedPace is FeedBytesPerSecond, which tests may raise (SetFeedPace).
var feedPace atomic.Int64

func init() { feedPace.Store(FeedBytesPerSecond) }

// blockWait is a service watch's wait: well under the API's cap, so an
// idle watch costs a request every 30 s.
const blockWait = 30 * time.Second

// Dashboard serves the pages and the feed.
type Dashboard struct {
	api   http.Handler
	log   *slog.Logger
	files map[string]asset

	mu   sync.Mutex
	open map[string]int // open feeds by identity (Identity.key)
}

type asset struct {
	body  []byte
	ctype string
}

// New returns the dashboard of a node whose REST API is served by apiH;
// log nil is silent.
func New(apiH http.Handler, log *slog.Logger) *Dashboard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{api: apiH, log: log, files: map[string]asset{}, open: map[string]int{}}
	types := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	err := fs.WalkDir(assets, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		d.files[path.Base(p)] = asset{body: b, ctype: types[path.Ext(p)]}
		return nil
	})
	if err != nil {
		panic("ui: embedded assets: " + err.Error()) // built into the binary: cannot happen
	}
	return d
}

// secure sets the headers every /ui answer carries.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// ServeHTTP serves GET /ui (the page) and GET /ui/{asset}, and refuses
// any other request under /ui with the same headers.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	secure(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := "index.html"
	if p := r.URL.Path; p != "/ui" && p != "/ui/" {
		name = path.Base(p)
		if path.Dir(p) != "/ui" || name == "index.html" {
			http.NotFound(w, r)
			return
		}
	}
	a, ok := d.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(a.body) // an error means the browser went away
}

// Feed serves GET /ui/events to a token the API authenticated as who: the
// live state, as server-sent events, until the request's context ends.
// ?tenant=NAME chooses the tenant whose services it follows (an admin's
// choice; a tenant token follows its own), by default the first by name.
//
// Events: hello {kind, tenant}; cluster (GET /v1/cluster's answer, admin
// tokens); tenants {tenants} (GET /v1/tenants, or the tenant's own);
// tenant {name} (whose services follow); services (GET .../services);
// service (GET .../services/{s}); gone {service}; sessions (GET
// .../sessions: the first page, up to 1,000 sessions by tag); problem
// {what, status, error}. A comment line every PingEvery keeps proxies from closing it.
func (d *Dashboard) Feed(w http.ResponseWriter, r *http.Request, who Identity) {
	secure(w.Header())
	fl, ok := w.(http.Flusher)
	if !ok {
		if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
			fl, _ = u.Unwrap().(http.Flusher)
		}
	}
	if fl == nil {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	tenant := r.URL.Query().Get("tenant")
	if tenant != "" {
		if err := api.ValidateTenantName("tenant", tenant); err != nil {
			writeProblem(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
			return
		}
	}
	if who.Tenant != "" {
		tenant = who.Tenant
	}
	key := who.key()
	if !d.acquire(key) {
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusTooManyRequests, api.CodeRateLimited,
			"this token holds every dashboard feed it may on this node ("+strconv.Itoa(MaxFeeds)+"): close a tab")
		return
	}
	defer d.release(key)
	rc := http.NewResponseController(w)
	// A deadline left on the connection would fail the next request on it.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	f := &feed{d: d, r: r, who: who, out: make(chan event, 256), auth: r.Header.Get("Authorization"), end: make(chan struct{})}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	f.send(ctx, "hello", map[string]any{"kind": who.kind(), "tenant": who.Tenant})
	if who.Admin {
		wg.Go(func() { f.poll(ctx, "cluster", "/v1/cluster", ClusterEvery, nil) })
	}
	picked := make(chan string, 1)
	wg.Go(func() { f.tenantsLoop(ctx, tenant, picked) })
	wg.Go(func() {
		name := tenant
		if name == "" {
			select {
			case name = <-picked:
			case <-ctx.Done():
				return
			}
		}
		f.send(ctx, "tenant", map[string]string{"name": name})
		var sessions sync.WaitGroup
		sessions.Go(func() {
			f.poll(ctx, "sessions", "/v1/tenants/"+url.PathEscape(name)+"/sessions", SessionsEvery, nil)
		})
		f.servicesLoop(ctx, name)
		sessions.Wait()
	})

	ping := time.NewTicker(PingEvery)
	defer ping.Stop()
	var buf bytes.Buffer
	for {
		ending := false
		select {
		case <-ctx.Done():
			return
		case <-f.end:
			ending = true // what is queued, the refusal with it, goes out first
		case <-ping.C:
			buf.WriteString(": ping\n\n")
		case e := <-f.out:
			e.writeTo(&buf)
		}
		// Whatever else is queued goes out in the same write.
	drain:
		for {
			select {
			case e := <-f.out:
				e.writeTo(&buf)
			default:
				break drain
			}
		}
		if buf.Len() > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := w.Write(buf.Bytes()); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			buf.Reset()
		}
		if ending {
			return
		}
	}
}

func writeProblem(w http.ResponseWriter, status int, code api.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}})
}

type event struct {
	name string
	data []byte // JSON, one line
}

// writeTo appends the event in the text/event-stream format.
func (e event) writeTo(b *bytes.Buffer) {
	b.WriteString("event: ")
	b.WriteString(e.name)
	b.WriteString("\ndata: ")
	b.Write(e.data)
	b.WriteString("\n\n")
}

// feed is one browser's live view.
type feed struct {
	d    *Dashboard
	r    *http.Request
	who  Identity
	auth string     // the browser's Authorization header, passed on
	out  chan event // to the writer, Feed's own loop

	ended sync.Once
	end   chan struct{} // closed when the token is refused 401: the feed ends

	paceMu sync.Mutex
	paceAt time.Time // when the service answers sent so far are paid for (FeedBytesPerSecond)
}

// pace waits until the feed's service answers, n more bytes of them
// included, are within FeedBytesPerSecond; false when ctx ends first.
func (f *feed) pace(ctx context.Context, n int) bool {
	f.paceMu.Lock()
	now := time.Now()
	if f.paceAt.Before(now) {
		f.paceAt = now
	}
	f.paceAt = f.paceAt.Add(time.Duration(int64(n) * int64(time.Second) / feedPace.Load()))
	wait := f.paceAt.Sub(now)
	f.paceMu.Unlock()
	return sleepCtx(ctx, wait)
}

// send queues an event; it gives up when ctx (the feed) ends.
func (f *feed) send(ctx context.Context, name string, v any) {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return
		}
	} else {
		// An API answer: compact it to one line, as the format needs.
		var c bytes.Buffer
		if json.Compact(&c, b) != nil {
			return
		}
		b = c.Bytes()
	}
	select {
	case f.out <- event{name: name, data: b}:
	case <-ctx.Done():
	}
}

// problem tells the page that a request of the feed failed.
func (f *feed) problem(ctx context.Context, what string, status int, body []byte) {
	var e struct {
		Error api.Error `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	msg := e.Error.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	f.send(ctx, "problem", map[string]any{"what": what, "status": status, "code": e.Error.Code, "error": msg})
	if status == http.StatusUnauthorized {
		// The token was revoked or rotated out: the page goes back to
		// its login, and the feed ends rather than ask on with it.
		f.ended.Do(func() { close(f.end) })
	}
}

// get asks the node's API for path with the browser's token, in-process.
func (f *feed) get(ctx context.Context, p string) (status int, body []byte) {
	status, body, _ = f.getHeader(ctx, p)
	return status, body
}

// getHeader is get with the answer's header.
func (f *feed) getHeader(ctx context.Context, p string) (status int, body []byte, h http.Header) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p, nil)
	if err != nil {
		return http.StatusBadRequest, nil, nil
	}
	req.RemoteAddr = f.r.RemoteAddr
	req.Host = f.r.Host
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	req.Header.Set("Authorization", f.auth)
	rec := &recorder{h: http.Header{}}
	defer func() {
		// The API ends a connection it will not answer by panicking with
		// http.ErrAbortHandler, which net/http recovers; here it is a
		// refusal like another, and any other panic is logged, not fatal.
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				f.d.log.Error("ui feed: the API panicked", "path", req.URL.Path, "panic", p, "stack", string(debug.Stack()))
			}
			status, body, h = http.StatusTooManyRequests, nil, nil
		}
	}()
	f.d.api.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.buf.Bytes(), rec.h
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.buf.Write(b)
}

// poll sends path's answer as event name each time it changes, every
// `every`; a refusal is sent once until it changes.
func (f *feed) poll(ctx context.Context, name, p string, every time.Duration, transform func([]byte) []byte) {
	var last []byte
	var lastStatus int
	for {
		status, body := f.get(ctx, p)
		if ctx.Err() != nil {
			return
		}
		if status == http.StatusOK {
			if transform != nil {
				body = transform(body)
			}
			if !bytes.Equal(body, last) || lastStatus != status {
				f.send(ctx, name, body)
				last = body
			}
		} else if status != lastStatus {
			f.problem(ctx, name, status, body)
			last = nil
		}
		lastStatus = status
		if !sleepCtx(ctx, every) {
			return
		}
	}
}

// tenantsLoop polls the tenants the token sees; the first list's first
// name goes to picked when no tenant was chosen.
func (f *feed) tenantsLoop(ctx context.Context, chosen string, picked chan<- string) {
	p := "/v1/tenants"
	if f.who.Tenant != "" {
		p = "/v1/tenants/" + url.PathEscape(f.who.Tenant)
	}
	sent := chosen != ""
	f.poll(ctx, "tenants", p, ClusterEvery, func(body []byte) []byte {
		var l api.TenantList
		if f.who.Tenant != "" {
			var t api.Tenant
			if json.Unmarshal(body, &t) != nil {
				return body
			}
			l.Tenants = []api.Tenant{t}
		} else if json.Unmarshal(body, &l) != nil {
			return body
		}
		slices.SortFunc(l.Tenants, func(a, b api.Tenant) int {
			if a.Name < b.Name {
				return -1
			}
			if a.Name > b.Name {
				return 1
			}
			return 0
		})
		if !sent && len(l.Tenants) > 0 {
			sent = true
			picked <- l.Tenants[0].Name
		}
		b, err := json.Marshal(l)
		if err != nil {
			return body
		}
		return b
	})
}

// servicesLoop polls tenant's service list and keeps one watch per
// service (up to MaxWatched).
func (f *feed) servicesLoop(ctx context.Context, tenant string) {
	base := "/v1/tenants/" + url.PathEscape(tenant) + "/services"
	type watch struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	watches := map[string]*watch{}
	defer func() {
		for _, w := range watches {
			w.cancel()
			<-w.done
		}
	}()
	var last []byte
	lastStatus := 0
	for {
		status, body := f.get(ctx, base)
		if ctx.Err() != nil {
			return
		}
		if status != http.StatusOK {
			if status != lastStatus {
				f.problem(ctx, "services", status, body)
			}
			lastStatus = status
			last = nil
			if !sleepCtx(ctx, ServicesEvery) {
				return
			}
			continue
		}
		lastStatus = status
		var l api.ServiceList
		if json.Unmarshal(body, &l) == nil {
			live := map[string]bool{}
			for _, s := range l.Services {
				live[s.Name] = true
				if watches[s.Name] == nil && len(watches) < MaxWatched {
					wctx, cancel := context.WithCancel(ctx)
					w := &watch{cancel: cancel, done: make(chan struct{})}
					watches[s.Name] = w
					go func(name string) {
						defer close(w.done)
						f.watchService(wctx, base+"/"+url.PathEscape(name))
					}(s.Name)
				}
			}
			for name, w := range watches {
				if !live[name] {
					w.cancel()
					<-w.done
					delete(watches, name)
					f.send(ctx, "gone", map[string]string{"service": name})
				}
			}
			if !bytes.Equal(body, last) {
				f.send(ctx, "services", body)
				last = body
			}
		}
		if !sleepCtx(ctx, ServicesEvery) {
			return
		}
	}
}

// watchService sends a service's answer, then every change of it, through
// blocking queries.
func (f *feed) watchService(ctx context.Context, p string) {
	var index, epoch uint64
	var pollUntil time.Time
	failed := 0
	for ctx.Err() == nil {
		q := p
		blocking := index > 0 && time.Now().After(pollUntil)
		if blocking {
			q += "?index=" + strconv.FormatUint(index, 10) + "&wait=" + blockWait.String() +
				"&epoch=" + strconv.FormatUint(epoch, 10)
		}
		status, body, h := f.getHeader(ctx, q)
		if ctx.Err() != nil {
			return
		}
		if status == http.StatusConflict && blocking {
			// max_watchers: the node holds as many blocking queries of
			// the tenant as it may. Plain reads take no watcher: read
			// every ServicesEvery for a while, then block again.
			pollUntil = time.Now().Add(10 * time.Second)
			continue
		}
		if status != http.StatusOK {
			if failed == 0 {
				f.problem(ctx, "service", status, body)
			}
			failed++
			// Backs off, at most a second: the page stays live.
			if !sleepCtx(ctx, min(time.Duration(failed)*100*time.Millisecond, time.Second)) {
				return
			}
			continue
		}
		failed = 0
		var s struct {
			Index uint64 `json:"index"`
		}
		if json.Unmarshal(body, &s) != nil {
			continue
		}
		// A tenant deleted and created again starts its indexes anew:
		// with the epoch asked, such a query answers at once.
		e, _ := strconv.ParseUint(h.Get(api.HeaderEpoch), 10, 64)
		sent := 0
		if s.Index != index || e != epoch {
			f.send(ctx, "service", body)
			sent = len(body)
		}
		polled := index > 0 && !blocking
		index, epoch = s.Index, e
		if polled && !sleepCtx(ctx, ServicesEvery) {
			return
		}
		if sent > 0 && !f.pace(ctx, sent) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
