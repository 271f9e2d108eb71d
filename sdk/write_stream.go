package sdk

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/stream"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// write sends a write with retries: on the Client's stream, as frame f,
// when the Client has one, else as the REST request method path. f names
// the write (its type and path fields); its Body, Session and Seq are
// filled here from body and the X-Rafting-Session and X-Rafting-Sequence
// of header.
//
// The stream carries the first attempt only, pipelined with every other
// write of the Client: one that the stream could not take (none open, a
// frame too large), one answered with a retryable error or a 401, and one
// whose answer the stream lost go on over REST with its retries. Every
// write is idempotent (numbered, or keyed by its session), so a copy sent
// again after a lost answer changes nothing.
func (c *Client) write(ctx context.Context, f api.ClientFrame, method, path string, body any, header http.Header) (*transport.Response, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = jsonMarshal(body); err != nil {
			return nil, err
		}
	}
	if c.stream != nil {
		f.Body, f.Session = b, header.Get(api.HeaderSession)
		f.Seq, _ = strconv.ParseUint(header.Get(api.HeaderSequence), 10, 64)
		if resp, err, final, _ := c.tryStream(ctx, f); final {
			return resp, err
		}
	}
	return c.tr.Do(ctx, transport.Request{Method: method, Path: path, Body: b, Header: header, Retry: writeRetry})
}

// tryStream sends f on the Client's stream once, when it has one. final:
// resp or err is the write's answer (a 2xx, the servers' final refusal,
// or ctx's end); else the write goes on over REST, and lost says that f
// was sent and its answer lost, so it may have been applied.
func (c *Client) tryStream(ctx context.Context, f api.ClientFrame) (resp *transport.Response, err error, final, lost bool) {
	if c.stream == nil {
		return nil, nil, false, false
	}
	resp, err = c.writeStream(ctx, f)
	if err == nil || ctx.Err() != nil {
		return resp, err, true, false
	}
	var ae *api.Error
	if errors.As(err, &ae) && !ae.Code.Retryable() && ae.Code != api.CodeUnauthorized {
		return nil, err, true, false // the servers' final word
	}
	c.log.Debug("write goes on over REST", "type", f.Type, "err", err)
	return nil, err, false, errors.Is(err, stream.ErrLost) || errors.As(err, &ae) && ae.Code == api.CodeTimeout
}

// writeStream sends f on the stream once: a 2xx answer as a Response (its
// epoch header the stream's), an error answer as its *api.Error.
func (c *Client) writeStream(ctx context.Context, f api.ClientFrame) (*transport.Response, error) {
	actx, cancel := context.WithTimeout(ctx, transport.AttemptTimeout)
	defer cancel()
	r, err := c.stream.Write(actx, f)
	switch {
	case err != nil && ctx.Err() == nil && actx.Err() != nil:
		return nil, stream.ErrLost // no answer within an attempt's time
	case err != nil:
		return nil, err
	case r.Status >= http.StatusBadRequest:
		return nil, api.Decode(r.Status, r.Body, "")
	}
	h := http.Header{api.HeaderEpoch: {strconv.FormatUint(r.Epoch, 10)}}
	return &transport.Response{Status: r.Status, Header: h, Body: r.Body, Server: r.Server}, nil
}
