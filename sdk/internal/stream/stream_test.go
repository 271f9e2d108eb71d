package stream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
)

// fakeStream is the server's end of one stream opened by a test's Opener.
type fakeStream struct {
	server string
	in     *bufio.Scanner // the client's frames
	out    *io.PipeWriter // the server's frames
}

func (f *fakeStream) read(t *testing.T) api.ClientFrame {
	t.Helper()
	if !f.in.Scan() {
		t.Fatalf("client frames ended: %v", f.in.Err())
	}
	var cf api.ClientFrame
	if err := json.Unmarshal(f.in.Bytes(), &cf); err != nil {
		t.Fatal(err)
	}
	return cf
}

func (f *fakeStream) send(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(f.out, l+"\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// opener returns an Opener whose streams arrive on the channel.
func opener() (Opener, chan *fakeStream) {
	ch := make(chan *fakeStream, 4)
	return func(ctx context.Context, server string, body io.Reader) (*http.Response, string, error) {
		pr, pw := io.Pipe()
		if server == "" {
			server = "any"
		}
		ch <- &fakeStream{server: server, in: bufio.NewScanner(body), out: pw}
		context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: pr}, server, nil
	}, ch
}

type updates struct {
	mu  sync.Mutex
	got []string
}

func (u *updates) Update(r *api.ServiceResponse, epoch uint64) {
	var ids []string
	for _, in := range r.Instances {
		ids = append(ids, in.ID)
	}
	u.mu.Lock()
	u.got = append(u.got, fmt.Sprintf("%d@%d:%s", r.Index, epoch, strings.Join(ids, ",")))
	u.mu.Unlock()
}

func (u *updates) Failed(error) {}

func (u *updates) list() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.got, " ")
}

func wantWatch(t *testing.T, f api.ClientFrame, w, index, epoch uint64) {
	t.Helper()
	if f.Type != api.FrameWatch || f.W != w || f.Index != index || f.Epoch != epoch || f.Service != "s" {
		t.Fatalf("frame = %+v, want watch w %d of s from index %d epoch %d", f, w, index, epoch)
	}
}

// TestWatchResyncMoved: a watch applies its snapshot and changes in order,
// starts again from the index of its last frame after a resync (covered:
// no snapshot) and after a moved that ends the stream (on the server the
// moved frame names first), and Close leaves no goroutine (synctest
// fails on one).
func TestWatchResyncMoved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		open, streams := opener()
		c := New(Config{Open: open})
		defer c.Close()
		u := &updates{}
		c.Watch("s", u)
		fs := <-streams
		f := fs.read(t)
		wantWatch(t, f, 1, 0, 0)
		fs.send(t,
			fmt.Sprintf(`{"type":"result","req":%d,"status":200,"body":{"w":1,"index":5,"epoch":7,"snapshot":true}}`, f.Req),
			`{"type":"snapshot","w":1,"index":5,"instances":[{"id":"a"}],"master":null,"policy":{}}`,
			`{"type":"changes","w":1,"index":6,"upsert":[{"id":"b"}]}`,
			`{"type":"resync","w":1}`)
		f = fs.read(t)
		wantWatch(t, f, 2, 6, 7)
		fs.send(t,
			// a late frame of the ended watch: ignored
			`{"type":"changes","w":1,"index":7,"upsert":[{"id":"x"}]}`,
			fmt.Sprintf(`{"type":"result","req":%d,"status":200,"body":{"w":2,"index":6,"epoch":7,"snapshot":false}}`, f.Req),
			`{"type":"changes","w":2,"index":8,"delete":["a"]}`,
			`{"type":"moved","servers":["leader:1","other:2"]}`)
		fs.out.Close()
		fs = <-streams
		if fs.server != "leader:1" {
			t.Fatalf("reopened on %q, want leader:1", fs.server)
		}
		f = fs.read(t)
		wantWatch(t, f, 1, 8, 7)
		synctest.Wait()
		if got, want := u.list(), "5@7:a 6@7:a,b 6@7:a,b 8@7:b"; got != want {
			t.Fatalf("updates = %s, want %s", got, want)
		}
		if s := c.Stats(); s.Opens != 2 || s.Snapshots != 1 || s.Resyncs != 1 {
			t.Fatalf("stats = %+v", s)
		}
	})
}

// TestWatchIdle: a stream on which nothing arrives for IdleTimeout is
// given up and opened again after a backoff, and the watch asks from where
// it was.
func TestWatchIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		open, streams := opener()
		c := New(Config{Open: open, IdleTimeout: 5 * time.Second})
		defer c.Close()
		u := &updates{}
		c.Watch("s", u)
		fs := <-streams
		f := fs.read(t)
		fs.send(t,
			fmt.Sprintf(`{"type":"result","req":%d,"status":200,"body":{"w":1,"index":3,"epoch":1,"snapshot":true}}`, f.Req),
			`{"type":"snapshot","w":1,"index":3,"instances":[],"master":null,"policy":{}}`)
		t0 := time.Now()
		fs = <-streams
		if d := time.Since(t0); d < 5*time.Second {
			t.Fatalf("reopened after %v of silence, want 5s", d)
		}
		wantWatch(t, fs.read(t), 1, 3, 1)
	})
}
