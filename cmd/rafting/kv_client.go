package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rafting/rafting/api"
)

// kvRequest is one request of the configuration store's commands. A body
// is sent as it is, with its contentType.
type kvRequest struct {
	method      string
	path        string // escaped, from /v1
	query       url.Values
	body        []byte
	contentType string
}

// kvReply is what a KV command keeps of an answer: its headers and body,
// and whether an attempt before the one that answered may have been
// applied (a 504, or a connection lost after the request went out).
type kvReply struct {
	header  http.Header
	body    []byte
	unknown bool
}

// index is the X-Rafting-Index header: the index a read was served at
// (a missing key's too), and whether there was one.
func (r kvReply) index() (uint64, bool) {
	n, err := strconv.ParseUint(r.header.Get(api.HeaderIndex), 10, 64)
	return n, err == nil
}

// send is the REST client's loop (client.do) for the KV commands, which
// need more of an answer than its JSON: the headers of an error answer too
// (a missing key's X-Rafting-Index), raw bodies, and whether an earlier
// attempt's outcome is unknown — a compare-and-set that times out and is
// sent again can fail its compare against its own first attempt, and must
// not report that as someone else's write. hc is the HTTP client (the
// watch's has a longer timeout). On an error answer the reply's header is
// set and the error is an *api.Error; a canceled ctx returns ctx.Err().
func (c *client) send(ctx context.Context, hc *http.Client, in kvRequest) (kvReply, error) {
	target := in.path
	if len(in.query) > 0 {
		target += "?" + in.query.Encode()
	}
	write := in.method != http.MethodGet
	var reply kvReply
	var last error
	for attempt := 0; attempt < 3*len(c.servers); attempt++ {
		if err := ctx.Err(); err != nil {
			return reply, err
		}
		base := c.servers[attempt%len(c.servers)]
		req, err := http.NewRequestWithContext(ctx, in.method, base+target, bytes.NewReader(in.body))
		if err != nil {
			return reply, err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		if in.contentType != "" {
			req.Header.Set("Content-Type", in.contentType)
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return reply, ctx.Err()
			}
			var op *net.OpError
			if write && !(errors.As(err, &op) && op.Op == "dial") {
				reply.unknown = true // sent, perhaps applied, answer lost
			}
			last = err
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
		resp.Body.Close()
		if err != nil {
			if ctx.Err() != nil {
				return reply, ctx.Err()
			}
			reply.unknown = reply.unknown || write
			last = err
			continue
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return reply, fmt.Errorf("%s %s: the server answered %d, a redirect to %q: not followed (the API never redirects; it would carry the token)",
				in.method, req.URL.EscapedPath(), resp.StatusCode, resp.Header.Get("Location"))
		}
		reply.header, reply.body = resp.Header, b
		if resp.StatusCode >= 400 {
			e := api.Decode(resp.StatusCode, b, resp.Header.Get("Retry-After"))
			if e.Code.Retryable() {
				if e.Code == api.CodeTimeout {
					reply.unknown = true
				}
				last = e
				select {
				case <-ctx.Done():
					return reply, ctx.Err()
				case <-time.After(max(e.RetryAfter, 100*time.Millisecond)):
				}
				continue
			}
			return reply, e
		}
		return reply, nil
	}
	return reply, fmt.Errorf("no server answered: %w", last)
}
