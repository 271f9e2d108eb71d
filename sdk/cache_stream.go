package sdk

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/stream"
)

// The client stream (WithClientStream, experimental): once a Service's
// first fill — a linearizable REST read, as without the stream — is done,
// the service is followed by a watch on the Client's one stream instead of
// a blocking-query loop. The watch keeps its own view of the service
// (snapshot plus changes, in index order) and hands each whole service to
// apply, so the cache's rules hold as they are: never back in time (an
// answer older than the cache, e.g. after a Sync, is dropped), the epoch
// from the watch's result, stale after every server failed in a row,
// quarantine of mass removals.

// useStream decides whether the Client uses the client stream: as
// WithClientStream says; by default, when a stream opens on a server now.
// One that does not (an HTTP/1.1 proxy between the Client and the servers,
// a server older than the stream, a WithHTTPClient without HTTP/2) leaves
// the Client on REST and session streams, which need neither.
func (c *Client) useStream(ctx context.Context) bool {
	if c.cfg.conn.clientStreamSet {
		return c.cfg.conn.clientStream
	}
	pctx, cancel := context.WithTimeout(ctx, streamProbeWait)
	defer cancel()
	pr, pw := io.Pipe()
	resp, server, err := c.tr.Duplex(pctx, "", c.tenantPath("/stream"), pr)
	if err != nil {
		pw.CloseWithError(err)
		c.log.Info("no client stream: using REST and session streams", "server", server, "err", err)
		return false
	}
	pw.Close() // the server ends a stream whose client sent everything
	resp.Body.Close()
	return true
}

// streamProbeWait bounds useStream's opening of a stream.
const streamProbeWait = 2 * time.Second

// newStream starts the Client's stream (Client.stream; nil without the
// option).
func (c *Client) newStream() *stream.Client {
	path := c.tenantPath("/stream")
	return stream.New(stream.Config{
		Open: func(ctx context.Context, server string, body io.Reader) (*http.Response, string, error) {
			return c.tr.Duplex(ctx, server, path, body)
		},
		Logger: c.log,
	})
}

// runStream follows the service on the Client's stream until ctx ends.
func (s *Service) runStream(ctx context.Context) {
	w := s.c.stream.Watch(s.name, streamWatch{s})
	<-ctx.Done()
	w.Stop()
}

// streamWatch hands a stream watch's services to the cache.
type streamWatch struct{ s *Service }

func (h streamWatch) Update(r *api.ServiceResponse, epoch uint64) { h.s.apply(r, epoch) }

func (h streamWatch) Failed(err error) { h.s.failed(err) }
