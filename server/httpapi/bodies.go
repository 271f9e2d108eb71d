package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// A request's body is admitted before any of it is read (admitBody): its
// route says how large it may be for the quotas of the path's tenant
// (bodyCaps), a declared length over that is refused 413 unread, and a
// body of unknown length (chunked) is cut there as it comes. Refusing a
// 1 MB registration after reading and decoding it cost the servers 21 →
// 65 % of a core at the write-byte budget (benchmarks/NOTES.md,
// attacks, pattern 1); refusing it by its Content-Length costs what any
// refusal does.

// bodyCap is how large a route's body may be for the quotas q of the
// path's tenant (the zero Quotas when there is no such tenant).
type bodyCap func(q api.Quotas, r *http.Request) bodyLimit

// bodyLimit is a body's cap: n bytes (negative: the body is a stream,
// bounded by its own frames), and what a 413 names — the field it is
// over in, the quota that sets it and that quota's value ("" and 0 for a
// fixed cap).
type bodyLimit struct {
	n          int64
	field      string
	quota      string
	quotaLimit int64
}

// smallBody is the cap of every route not in bodyCaps: the small JSON
// objects of sessions, policies and resigns, and routes that read no body
// at all (GETs, DELETEs), whose bodies are refused rather than read.
const smallBody = 16 << 10

// bodyCaps lists the routes whose bodies may be larger than smallBody, by
// the pattern they are served under.
var bodyCaps = map[string]bodyCap{
	"PUT /v1/tenants/{t}/services/{s}/instances/{id}": registerCap,
	"PUT /v1/tenants/{t}/kv/{key...}":                 kvPutCap,
	"POST /v1/tenants/{t}/kv:txn":                     kvTxnCap,
	"PUT /v1/tenants/{t}/sessions/{id}/keepalive":     fixedCap(maxLaneBody),
	"POST /v1/tenants/{t}/stream":                     fixedCap(-1), // frames, each capped (clientstream.go)
	"POST /v1/restore":                                fixedCap(maxRestoreBytes),
	"POST /v1/tenants":                                fixedCap(api.MaxBodyBytes),
	"PATCH /v1/tenants/{t}":                           fixedCap(api.MaxBodyBytes),
	"POST /v1/tenants/{t}/token":                      fixedCap(api.MaxBodyBytes),
	"POST /v1/cluster/nodes":                          fixedCap(api.MaxBodyBytes),
}

func fixedCap(n int64) bodyCap {
	return func(api.Quotas, *http.Request) bodyLimit { return bodyLimit{n: n, field: "body"} }
}

// jsonEscape is the most bytes JSON may spend on one byte of a string
// (\u003c: what Go's encoding/json writes for '<', '>' and '&').
const jsonEscape = 6

// registerCap: a registration's meta, every byte of it escaped at worst,
// with its punctuation, and an allowance for the other fields (address
// and zone escaped at worst, session, numbers, cold_start, indentation).
// A tenant without a max_meta_bytes (0) may send a whole body.
func registerCap(q api.Quotas, _ *http.Request) bodyLimit {
	if q.MaxMetaBytes <= 0 {
		return bodyLimit{n: api.MaxBodyBytes, field: "body"}
	}
	return bodyLimit{n: min(api.MaxBodyBytes, jsonEscape*q.MaxMetaBytes+8*fsm.MaxMetaEntries+32<<10),
		field: "body", quota: tenants.QuotaMaxMetaBytes, quotaLimit: q.MaxMetaBytes}
}

// kvPutCap: the value itself, raw, or as JSON (kvJSONLimit).
func kvPutCap(q api.Quotas, r *http.Request) bodyLimit {
	_, maxValue, _ := tenants.KVLimits(q)
	if isJSON(r) {
		return bodyLimit{n: kvJSONLimit(maxValue), field: "body", quota: tenants.QuotaMaxValueBytes, quotaLimit: maxValue}
	}
	return bodyLimit{n: maxValue, field: "value", quota: tenants.QuotaMaxValueBytes, quotaLimit: maxValue}
}

// kvTxnCap: MaxTxnOps operations, each a key and a value escaped at worst.
func kvTxnCap(q api.Quotas, _ *http.Request) bodyLimit {
	_, maxValue, _ := tenants.KVLimits(q)
	return bodyLimit{n: min(api.MaxBodyBytes, api.MaxTxnOps*(jsonEscape*(maxValue+api.MaxKeyLen)+1024)),
		field: "body", quota: tenants.QuotaMaxValueBytes, quotaLimit: maxValue}
}

// capOf is a route's bodyCap.
func capOf(route string) bodyCap {
	if c, ok := bodyCaps[route]; ok {
		return c
	}
	return fixedCap(smallBody)
}

// admitBody admits a request's body before any of it is read. A write's
// declared length (its cap, when it is chunked) is charged to the
// tenant's write bytes first, so that refusals of large bodies come no
// faster than the budget (past it: 429, held); then a declared length
// over the cap is refused 413 naming the quota that sets it, unread, and
// a chunked body is cut at the cap as it is read (413 from the decoder).
func (s *Server) admitBody(w http.ResponseWriter, r *http.Request, c bodyCap, who identity, write bool, now time.Time) error {
	if r.ContentLength == 0 {
		return nil
	}
	var q api.Quotas
	if t := r.PathValue("t"); t != "" {
		if brief, ok := s.node.Meta().Brief(t); ok {
			q = brief.Quotas
		}
	}
	lim := c(q, r)
	limit := lim.n
	if limit < 0 {
		return nil
	}
	size := r.ContentLength
	if write && who.tenant != "" {
		charge := size
		if charge < 0 {
			charge = limit
		}
		if err := s.chargeWriteBytes(who.tenant, int(min(charge, api.MaxBodyBytes)), now); err != nil {
			return err
		}
	}
	if size > limit {
		return lim.tooLarge(size)
	}
	if size < 0 {
		r.Body = &cappedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), tooLarge: lim.tooLarge(-1)}
	}
	return nil
}

// cappedBody is a chunked body cut at its route's cap: past it, reads
// fail with the route's 413 (the decoders answer an *api.Error as it is).
type cappedBody struct {
	io.ReadCloser
	tooLarge *api.Error
}

func (c *cappedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return n, c.tooLarge
	}
	return n, err
}

// bodyError is the answer to a failed read of a body: a 413 of a cap (the
// decoder's own, or the route's) ends the connection after the answer,
// the rest of the body unread; anything else is a 400 naming the body.
func bodyError(w http.ResponseWriter, err error, limit int64) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeTooLarge {
		closeAfter(w)
		return ae
	}
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		closeAfter(w)
		return api.Errorf(api.CodeTooLarge, "body: larger than %d bytes", limit)
	}
	return api.BadField("body", "%v", err)
}

// tooLarge is the 413 of a body of size bytes (-1: known only to be
// larger) over the cap, naming its field, and the quota that sets the cap
// with that quota's value (Used: the body's size, when the body is the
// field: a raw value).
func (l bodyLimit) tooLarge(size int64) *api.Error {
	e := &api.Error{Code: api.CodeTooLarge, Quota: l.quota, Limit: l.quotaLimit}
	what := fmt.Sprintf("larger than %d bytes", l.n)
	if size >= 0 {
		what = fmt.Sprintf("%d bytes, over %d", size, l.n)
	}
	switch {
	case l.quota == "":
		e.Limit = l.n
		e.Message = fmt.Sprintf("%s: %s, the most this endpoint reads", l.field, what)
	case l.field == "value":
		e.Used = max(size, 0)
		e.Message = fmt.Sprintf("value: %s, the tenant's %s", what, l.quota)
	default:
		e.Message = fmt.Sprintf("%s: %s, the most this write may be under the tenant's %s %d", l.field, what, l.quota, l.quotaLimit)
	}
	return e
}

// leftUnread is how much of a body a refusal may leave on the connection
// and still keep it: net/http reads what is left (up to 256 KiB) to reach
// the next request, and a small remainder is cheaper to read than a new
// connection is to make.
const leftUnread = 4 << 10

// leaveBody is called before a refusal that did not read the request's
// body: when more than leftUnread of it may be left, the connection ends
// after the answer, and nothing more of it is read (endReads).
func leaveBody(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && (r.ContentLength > leftUnread || r.ContentLength < 0 && r.Body != http.NoBody && r.Body != nil) {
		closeAfter(w)
	}
}

// endReads is called when a handler is done: an HTTP/1 answer that ends
// its connection ("Connection: close") also ends the reading of it, so
// that net/http does not read what is left of a refused body before it
// closes the connection (a limitedConn then half-closes it and lets the
// client read the answer before the whole close: lingerClose).
func endReads(ctx context.Context, r *http.Request, h http.Header) {
	if r.ProtoMajor != 1 || h.Get("Connection") != "close" {
		return
	}
	if lc, ok := ctx.Value(connKey{}).(*limitedConn); ok {
		lc.endReads()
	}
}
