package transport

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
)

// newDuplexTransport is the transport of client streams: HTTP/2 only, h2c
// with prior knowledge for plain HTTP and h2 by ALPN with TLS, so that every
// stream and request to a server shares one connection.
func newDuplexTransport(tc *tls.Config) *http.Transport {
	t := NewTransport(tc, 15*time.Second)
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	t.Protocols = &p
	return t
}

// Duplex opens a full-duplex POST stream (the client stream) on server,
// whatever its breaker says (a server named by a moved frame or a leader
// hint is fresher news than the breaker's memory), or, when server is "",
// on the next server in turn whose breaker allows it. body carries the
// client's frames; the caller closes it (with CloseWithError: cancelling
// ctx alone does not end a stream whose body Go's transport is reading)
// and reads and closes the answer's body. It returns the server used; an
// error answer is an *api.Error, no answer a *NetError.
func (c *Client) Duplex(ctx context.Context, server, path string, body io.Reader) (*http.Response, string, error) {
	done := func(error) {}
	if server == "" || !c.allowed(server) {
		var err error
		if server, done, err = c.acquire(""); err != nil {
			return nil, "", err
		}
	}
	u, err := c.url(server, path)
	if err != nil {
		done(nil)
		return nil, server, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		done(nil)
		return nil, server, err
	}
	hr.Header.Set("Authorization", c.auth)
	hr.Header.Set("Content-Type", "application/x-ndjson")
	hr.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.duplex.Do(hr)
	if err != nil {
		err = netError(ctx, server, err)
		if ctx.Err() != nil {
			done(context.Canceled)
		} else {
			done(err)
		}
		return nil, server, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, api.MaxBodyBytes))
		resp.Body.Close()
		e := c.decodeError(resp, b)
		done(e)
		return nil, server, e
	}
	done(nil)
	return resp, server, nil
}
