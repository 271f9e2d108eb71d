package httpapi

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/tenants"
)

// The configuration store's request decoders (the REST side of
// server/fsm's kv.go). Like parse.go's, none needs the cluster: each has a
// fuzz target, and every error is a 4xx *api.Error naming the field.

// kvJSONLimit is how large a JSON PUT body may be for a value of at most
// maxValue bytes: its text escaped at worst (6 bytes a byte, \u0001) and
// the envelope, never more than a request's body.
func kvJSONLimit(maxValue int64) int64 {
	return min(api.MaxBodyBytes, 6*maxValue+4096)
}

// isJSON reports whether a request's body is JSON by its Content-Type.
func isJSON(r *http.Request) bool {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && t == "application/json"
}

// parseKVPut reads PUT /v1/tenants/{t}/kv/{key...}. The body is the value
// itself, raw, unless it is sent as application/json (api.KVPutRequest).
// maxValue is the tenant's max_value_bytes: a larger value is refused 413
// as it arrives, before the rest of it is read (and a Content-Length over
// it before any of it is).
func parseKVPut(w http.ResponseWriter, r *http.Request, maxValue int64, now time.Time) (fsm.KVPut, error) {
	key := r.PathValue("key")
	if err := api.ValidateKey("key", key); err != nil {
		return fsm.KVPut{}, err
	}
	ifIndex, err := parseOptionalUint(r, "if_index")
	if err != nil {
		return fsm.KVPut{}, err
	}
	session := queryValue(r.URL.RawQuery, "session")
	if prefix, err := parseBool(r, "prefix"); err != nil {
		return fsm.KVPut{}, err
	} else if prefix {
		return fsm.KVPut{}, api.BadField("prefix", "a PUT writes one key")
	}
	var value []byte
	if isJSON(r) {
		var req api.KVPutRequest
		limit := kvJSONLimit(maxValue)
		if r.ContentLength > limit {
			return fsm.KVPut{}, tooLargeBody(w, "body", limit)
		}
		if err := decodeUpTo(w, r, &req, false, limit); err != nil {
			return fsm.KVPut{}, err
		}
		switch {
		case req.Text != nil && req.Value != nil:
			return fsm.KVPut{}, api.BadField("value", "give text or value, not both")
		case req.Text != nil:
			value = []byte(*req.Text)
		case req.Value != nil:
			value = req.Value
		default:
			return fsm.KVPut{}, api.BadField("value", "text or value is required (an empty value is \"\")")
		}
		if req.IfIndex != nil {
			if ifIndex != nil {
				return fsm.KVPut{}, api.BadField("if_index", "given in the query and in the body")
			}
			ifIndex = req.IfIndex
		}
		if req.Session != "" {
			if session != "" {
				return fsm.KVPut{}, api.BadField("session", "given in the query and in the body")
			}
			session = req.Session
		}
	} else {
		if value, err = readValue(w, r, maxValue); err != nil {
			return fsm.KVPut{}, err
		}
	}
	if int64(len(value)) > maxValue {
		return fsm.KVPut{}, &api.Error{Code: api.CodeTooLarge, Quota: tenants.QuotaMaxValueBytes, Limit: maxValue, Used: int64(len(value)),
			Message: fmt.Sprintf("value: %d bytes, over the tenant's max_value_bytes %d", len(value), maxValue)}
	}
	if session != "" {
		if err := api.ValidateSessionID("session", session); err != nil {
			return fsm.KVPut{}, err
		}
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.KVPut{}, err
	}
	seq, err := parseSeq(r, cmp.Or(caller, session))
	if err != nil {
		return fsm.KVPut{}, err
	}
	return fsm.KVPut{Key: key, Value: value, IfIndex: ifIndex, Session: session, Caller: caller, Seq: seq, AtMs: now.UnixMilli()}, nil
}

// readValue reads a raw body of at most maxValue bytes: 413 naming the
// value past it, read no further.
func readValue(w http.ResponseWriter, r *http.Request, maxValue int64) ([]byte, error) {
	if r.ContentLength > maxValue {
		return nil, valueTooLarge(w, maxValue, r.ContentLength)
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValue))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, valueTooLarge(w, maxValue, -1)
		}
		return nil, bodyError(w, err, maxValue)
	}
	if value == nil {
		value = []byte{}
	}
	return value, nil
}

// valueTooLarge refuses a raw value over max_value_bytes (size -1: known
// only to be larger). The connection is closed after the answer: the rest
// of the body is not read.
func valueTooLarge(w http.ResponseWriter, maxValue, size int64) error {
	closeAfter(w)
	e := &api.Error{Code: api.CodeTooLarge, Quota: tenants.QuotaMaxValueBytes, Limit: maxValue,
		Message: fmt.Sprintf("value: over the tenant's max_value_bytes %d", maxValue)}
	if size >= 0 {
		e.Used = size
		e.Message = fmt.Sprintf("value: %d bytes, over the tenant's max_value_bytes %d", size, maxValue)
	}
	return e
}

// tooLargeBody refuses a body by its Content-Length, unread.
func tooLargeBody(w http.ResponseWriter, field string, limit int64) error {
	closeAfter(w)
	return api.Errorf(api.CodeTooLarge, "%s: larger than %d bytes", field, limit)
}

// closeAfter asks the http.Server to close the connection after the
// answer (an unread body is left on it).
func closeAfter(w http.ResponseWriter) {
	if w != nil {
		w.Header().Set("Connection", "close")
	}
}

// parseOptionalUint reads a non-negative integer query parameter that may
// be absent (nil) — ?if_index=0 is not the same as no if_index.
func parseOptionalUint(r *http.Request, name string) (*uint64, error) {
	if queryValue(r.URL.RawQuery, name) == "" {
		return nil, nil
	}
	n, err := parseUintParam(r, name)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// parseKVDelete reads DELETE /v1/tenants/{t}/kv/{key...}: ?prefix=true
// deletes the subtree (of a key that is not empty; no if_index), else
// ?if_index= makes it a compare-and-delete.
func parseKVDelete(r *http.Request, now time.Time) (fsm.KVDelete, error) {
	prefix, err := parseBool(r, "prefix")
	if err != nil {
		return fsm.KVDelete{}, err
	}
	ifIndex, err := parseOptionalUint(r, "if_index")
	if err != nil {
		return fsm.KVDelete{}, err
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.KVDelete{}, err
	}
	seq, err := parseSeq(r, caller)
	if err != nil {
		return fsm.KVDelete{}, err
	}
	c := fsm.KVDelete{Key: r.PathValue("key"), Prefix: prefix, IfIndex: ifIndex, Caller: caller, Seq: seq, AtMs: now.UnixMilli()}
	// The checks the state machine makes without its state, now (the
	// handler's own check runs them again: the decoder stands alone).
	if err := fsm.CheckCommand(c, api.Quotas{}, ""); err != nil {
		return fsm.KVDelete{}, err
	}
	return c, nil
}

// kvQuery is a validated GET .../kv/{key...}.
type kvQuery struct {
	key    string
	prefix bool
	raw    bool
	start  string
	limit  int
	index  uint64
	epoch  uint64
	wait   time.Duration
}

// parseKVQuery reads GET /v1/tenants/{t}/kv/{key...}: one key, or with
// ?prefix=true its subtree (every key for an empty key), ?limit= keys a
// page from ?start=; ?raw=true answers one key's value as the body;
// ?index=, ?epoch=, ?wait= block as service reads do; ?consistent=true.
func parseKVQuery(r *http.Request, maxWait time.Duration) (kvQuery, error) {
	q := kvQuery{key: r.PathValue("key"), limit: api.DefaultKVPage}
	var err error
	if q.prefix, err = parseBool(r, "prefix"); err != nil {
		return kvQuery{}, err
	}
	if q.raw, err = parseBool(r, "raw"); err != nil {
		return kvQuery{}, err
	}
	if q.prefix {
		if q.raw {
			return kvQuery{}, api.BadField("raw", "answers one key's value: not with prefix")
		}
		err = api.ValidateKeyPrefix("key", q.key)
	} else {
		err = api.ValidateKey("key", q.key)
	}
	if err != nil {
		return kvQuery{}, err
	}
	if q.start = queryValue(r.URL.RawQuery, "start"); q.start != "" {
		if !q.prefix {
			return kvQuery{}, api.BadField("start", "pages a prefix read: not without prefix")
		}
		if err := api.ValidateKey("start", q.start); err != nil {
			return kvQuery{}, err
		}
	}
	if v := queryValue(r.URL.RawQuery, "limit"); v != "" {
		n, err := parseUintParam(r, "limit")
		if err != nil || n == 0 || n > api.MaxKVPage {
			return kvQuery{}, api.BadField("limit", "%q must be within [1, %d]", v, api.MaxKVPage)
		}
		q.limit = int(n)
	}
	if q.index, err = parseIndex(r); err != nil {
		return kvQuery{}, err
	}
	if q.epoch, err = parseUintParam(r, "epoch"); err != nil {
		return kvQuery{}, err
	}
	if q.wait, err = parseWait(r, maxWait, maxWait); err != nil {
		return kvQuery{}, err
	}
	if _, err := parseBool(r, "consistent"); err != nil {
		return kvQuery{}, err
	}
	return q, nil
}

// parseKVTxn reads POST /v1/tenants/{t}/kv:txn (api.KVTxnRequest) into the
// state machine's form: each compare with exactly one target, each put
// with exactly one of text and value. The checks of keys, counts, sizes
// and duplicates are the state machine's (fsm.Check), which the handler
// runs before anything is proposed.
func parseKVTxn(w http.ResponseWriter, r *http.Request, now time.Time) (fsm.KVTxn, error) {
	var req api.KVTxnRequest
	if err := decode(w, r, &req, false); err != nil {
		return fsm.KVTxn{}, err
	}
	if n := len(req.Compare) + len(req.Put) + len(req.Delete); n > api.MaxTxnOps {
		return fsm.KVTxn{}, api.BadField("compare", "%d compares, puts and deletes; at most %d", n, api.MaxTxnOps)
	}
	c := fsm.KVTxn{AtMs: now.UnixMilli()}
	for i, cp := range req.Compare {
		field := fmt.Sprintf("compare[%d]", i)
		fc := fsm.KVCompare{Key: cp.Key}
		set := 0
		if cp.ModIndex != nil {
			set++
			fc.Target, fc.Index = fsm.CompareModIndex, *cp.ModIndex
		}
		if cp.Version != nil {
			set++
			fc.Target, fc.Index = fsm.CompareVersion, *cp.Version
		}
		if cp.Exists != nil {
			set++
			fc.Target, fc.Exists = fsm.CompareExists, *cp.Exists
		}
		if cp.Text != nil || cp.Value != nil {
			set++
			fc.Target, fc.Value = fsm.CompareValue, cp.Value
			if cp.Text != nil {
				if cp.Value != nil {
					return fsm.KVTxn{}, api.BadField(field+".value", "give text or value, not both")
				}
				fc.Value = []byte(*cp.Text)
			}
			if fc.Value == nil {
				fc.Value = []byte{}
			}
		}
		if set != 1 {
			return fsm.KVTxn{}, api.BadField(field, "compares exactly one of mod_index, version, exists, text or value; got %d", set)
		}
		c.Compare = append(c.Compare, fc)
	}
	for i, p := range req.Put {
		field := fmt.Sprintf("put[%d]", i)
		value := p.Value
		switch {
		case p.Text != nil && p.Value != nil:
			return fsm.KVTxn{}, api.BadField(field+".value", "give text or value, not both")
		case p.Text != nil:
			value = []byte(*p.Text)
		case p.Value == nil:
			return fsm.KVTxn{}, api.BadField(field+".value", "text or value is required (an empty value is \"\")")
		}
		c.Put = append(c.Put, fsm.KVTxnPut{Key: p.Key, Value: value, Session: p.Session})
	}
	for _, d := range req.Delete {
		c.Delete = append(c.Delete, d.Key)
	}
	caller, err := callerSession(r)
	if err != nil {
		return fsm.KVTxn{}, err
	}
	if c.Seq, err = parseSeq(r, caller); err != nil {
		return fsm.KVTxn{}, err
	}
	c.Caller = caller
	// Every check without the state, with the largest quotas a tenant
	// may have: the handler checks the tenant's own before proposing.
	if err := fsm.CheckCommand(c, api.Quotas{MaxValueBytes: tenants.MaxValueBytes}, ""); err != nil {
		return fsm.KVTxn{}, err
	}
	return c, nil
}
