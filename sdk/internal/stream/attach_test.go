package stream

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
)

// redHandler records an attachment's news.
type redHandler struct {
	mu       sync.Mutex
	attached int
	detached []error
}

func (h *redHandler) Attached(string, api.AttachResponse) { h.mu.Lock(); h.attached++; h.mu.Unlock() }
func (h *redHandler) Detached(err error) {
	h.mu.Lock()
	h.detached = append(h.detached, err)
	h.mu.Unlock()
}
func (h *redHandler) Event(*api.ServerFrame, uint64) {}

func (h *redHandler) n() int { h.mu.Lock(); defer h.mu.Unlock(); return h.attached }

// TestAttachRefusedIsRetried: the tenant leader refuses an attach with a
// status that is not "not the leader" and sends no moved frame — 503 "the
// tenant shard's new leader is taking over" (right after every leader
// change, the moment a moved stream arrives there), 429 from the session
// lane, 409 (MaxStreams, or the tenant's max_sessions streams while an old
// stream is still counted), 404 (a session whose opening a follower
// answered, not applied on the leader yet). The Attachment attaches again on this stream
// after the pause the server asks for: a master-seeking session that
// stayed detached could not renew (not_attached) until its TTL ended it.
func TestAttachRefusedIsRetried(t *testing.T) {
	for _, refusal := range []string{
		`{"type":"result","req":%d,"status":503,"body":{"error":{"code":"unavailable","message":"the tenant shard's new leader is taking over"}}}`,
		`{"type":"result","req":%d,"status":429,"body":{"error":{"code":"rate_limited","message":"session keepalive lane: too many keepalives or attaches for this session"}}}`,
		`{"type":"result","req":%d,"status":409,"body":{"error":{"code":"conflict","message":"session has 2 streams attached already"}}}`,
		`{"type":"result","req":%d,"status":404,"body":{"error":{"code":"not_found","message":"session 1234 not found"}}}`,
	} {
		t.Run(refusal[35:38], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				open, streams := opener()
				c := New(Config{Open: open, IdleTimeout: time.Hour})
				defer c.Close()
				fs := <-streams
				h := &redHandler{}
				a := c.Attach("sess-1", h)
				f := fs.read(t)
				if f.Type != api.FrameAttach {
					t.Fatalf("first frame %+v, want attach", f)
				}
				// The reader of the fake server: counts further attaches.
				var mu sync.Mutex
				attaches := 0
				go func() {
					for fs.in.Scan() {
						if f := fs.read0(); f.Type == api.FrameAttach {
							mu.Lock()
							attaches++
							mu.Unlock()
							fs.send(t, fmt.Sprintf(`{"type":"result","req":%d,"status":200,"body":{"session_tag":"x"}}`, f.Req))
						}
					}
				}()
				fs.send(t, fmt.Sprintf(refusal, f.Req))
				// The member's worker: keepalives refused not_attached,
				// each followed by Again(sent), every 250 ms for 10 s.
				reopened := false
				for range 40 {
					time.Sleep(250 * time.Millisecond)
					synctest.Wait()
					a.Again(time.Now().Add(-time.Millisecond))
					select {
					case ns := <-streams:
						reopened = true
						go func() {
							for ns.in.Scan() {
								if f := ns.read0(); f.Type == api.FrameAttach {
									ns.send(t, fmt.Sprintf(`{"type":"result","req":%d,"status":200,"body":{"session_tag":"x"}}`, f.Req))
								}
							}
						}()
					default:
					}
					if h.n() > 0 {
						return // attached again: the property holds
					}
				}
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("after the refusal, 10 s of not_attached keepalives and 40 Again calls: attached %d times, %d attach frames on the stream, a new stream %v: the session is never attached again",
					h.n(), attaches, reopened)
			})
		})
	}
}

// read0 decodes the frame the scanner holds.
func (f *fakeStream) read0() api.ClientFrame {
	var cf api.ClientFrame
	_ = json.Unmarshal(f.in.Bytes(), &cf)
	return cf
}
