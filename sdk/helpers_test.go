package sdk_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
	"github.com/rafting/rafting/server/servertest"
)

// eventually polls cond every 5 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	servertest.Eventually(t, timeout, what, cond)
}

// throughout fails t as soon as check returns an error, checking every
// 5 ms for d: for what must keep holding for a while, as eventually is
// for what must come to hold.
func throughout(t testing.TB, d time.Duration, check func() error) {
	t.Helper()
	for until := time.Now().Add(d); time.Now().Before(until); time.Sleep(5 * time.Millisecond) {
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// restartAll starts every node of c again, after c.Servers.Stop, and
// waits until they serve. They start together: a node alone waits for a
// quorum.
func restartAll(c *sdktest.Cluster) {
	var wg sync.WaitGroup
	for i := range c.Servers.Addrs() {
		wg.Go(func() { c.Servers.StartNode(i + 1) })
	}
	wg.Wait()
	c.Servers.WaitReady()
}

// tenant is one tenant of a shared test cluster.
type tenant struct {
	c    *sdktest.Cluster
	name string
	tok  string
	// mode: whether the tenant's Clients use the client stream for their
	// watches and sessions (WithClientStream), or the SDK's default.
	mode transportMode
}

// transportMode is how a test's Clients reach the servers.
type transportMode int

const (
	defaultMode transportMode = iota // the SDK's default: the stream when one opens
	restMode                         // WithClientStream(false): REST and session streams
	streamMode                       // WithClientStream(true)
)

// behaviour is one behaviour of a suite run on a shared cluster, in a
// tenant of its own with quotas q.
type behaviour struct {
	name string
	fn   func(*testing.T, *tenant)
	q    api.Quotas
}

// runBehaviours runs every behaviour in each transport mode, each in a
// tenant of its own: the mode's initial, prefix, and a letter by its place.
func runBehaviours(t *testing.T, c *sdktest.Cluster, prefix string, tests []behaviour) {
	for _, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tn := newTenant(t, c, strings.ToLower(mode.name[:1])+prefix+string(rune('a'+i)), tt.q)
					tn.mode = mode.mode
					tt.fn(t, tn)
				})
			}
		})
	}
}

// transportModes are the modes a behaviour runs in, by name.
var transportModes = []struct {
	name string
	mode transportMode
}{{"REST", restMode}, {"ClientStream", streamMode}}

func newTenant(t *testing.T, c *sdktest.Cluster, name string, q api.Quotas) *tenant {
	t.Helper()
	return &tenant{c: c, name: name, tok: c.CreateTenant(t, name, q)}
}

func (tn *tenant) opts(extra ...sdk.Option) []sdk.Option {
	opts := tn.c.TenantOptions(tn.name, tn.tok)
	if tn.mode != defaultMode {
		opts = append(opts, sdk.WithClientStream(tn.mode == streamMode))
	}
	return append(opts, extra...)
}

func (tn *tenant) connect(t *testing.T, extra ...sdk.Option) *sdk.Client {
	t.Helper()
	cl, err := sdk.Connect(ctxT(t, 30*time.Second), tn.opts(extra...)...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func (tn *tenant) join(t *testing.T, inst sdk.Instance, extra ...sdk.Option) *sdk.Member {
	t.Helper()
	m, err := sdk.Join(ctxT(t, 30*time.Second), inst, tn.opts(extra...)...)
	if err != nil {
		t.Fatalf("join %s/%s: %v", inst.Service, inst.ID, err)
	}
	t.Cleanup(func() { m.Leave(context.Background()) })
	return m
}

// rest sends a REST request to any running node, retrying 503s, and
// returns the answer.
func (tn *tenant) rest(t *testing.T, method, path string, body any) *servertest.Response {
	t.Helper()
	sc := tn.c.Servers
	deadline := time.Now().Add(30 * time.Second)
	for node := 1; ; node = node%len(sc.Addrs()) + 1 {
		if sc.Server(node) == nil {
			continue
		}
		r, err := sc.DoErr(context.Background(), node, tn.tok, method, "/v1/tenants/"+tn.name+path, body, nil)
		if err == nil {
			if e := r.Err(); e == nil || !e.Code.Retryable() {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: no answer in 30s (last: %v)", method, path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roles records a member's role changes.
type roles struct {
	mu  sync.Mutex
	seq []sdk.RoleChange
}

func (r *roles) record(c sdk.RoleChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq = append(r.seq, c)
}

func (r *roles) all() []sdk.RoleChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.RoleChange(nil), r.seq...)
}

// firstAt returns when the member first took role after since.
func (r *roles) firstAt(role sdk.Role, since time.Time) (time.Time, bool) {
	for _, c := range r.all() {
		if c.Role == role && c.Role != c.Previous && !c.At.Before(since) {
			return c.At, true
		}
	}
	return time.Time{}, false
}

func (r *roles) String() string {
	s := ""
	for _, c := range r.all() {
		s += fmt.Sprintf(" %s(%d)", c.Role, c.Token)
	}
	return s
}

// masters returns the members that believe they are master now.
func masters(ms ...*sdk.Member) []*sdk.Member {
	var out []*sdk.Member
	for _, m := range ms {
		if m.IsMaster() {
			out = append(out, m)
		}
	}
	return out
}

func ids(ins []api.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return out
}

var _ = http.MethodGet

// fencingToken is the member's token while it is Master, else 0.
func fencingToken(m *sdk.Member) uint64 {
	t, _ := m.Mastership()
	return t.Token
}
