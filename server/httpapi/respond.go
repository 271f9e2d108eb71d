package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
)

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, api.Errorf(api.CodeInternal, "encode answer: %v", err))
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers an error as DESIGN.md lists it: the status of its code,
// an ErrorBody, and on 429, 503 and 504 a Retry-After (whole seconds,
// rounded up) beside retry_after_ms.
func writeError(w http.ResponseWriter, err error) {
	e, ok := err.(*api.Error)
	if ok {
		if b, ok := staticBodies[e]; ok {
			b.write(w)
			return
		}
	} else {
		e = asAPIError(err)
	}
	if e.Code == api.CodeInternal {
		// What went wrong inside goes to the log with the request's ID,
		// not to the client.
		if d, ok := w.(interface{ failed(string) }); ok {
			d.failed(e.Message)
		}
		c := *e
		c.Message = "internal error: the server's log has it under request " + w.Header().Get(HeaderRequestID)
		e = &c
	}
	status := e.Status()
	switch status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if e.RetryAfter <= 0 {
			c := *e
			c.RetryAfter = 200 * time.Millisecond
			e = &c
		}
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	if e.Leader != "" {
		w.Header().Set(api.HeaderLeader, e.Leader)
	}
	writeJSON(w, status, e.Body())
}

// asAPIError is the *api.Error err wraps, or an internal error of it
// (apart from writeError: its errors.As would move writeError's error to
// the heap, an allocation on every answer).
func asAPIError(err error) *api.Error {
	var e *api.Error
	if !errors.As(err, &e) {
		e = api.Errorf(api.CodeInternal, "%v", err)
	}
	return e
}

// staticBodies are the answers of the errors made by staticError.
var staticBodies = map[*api.Error]*encodedError{}

// staticError registers e, an error that is never changed, to be answered
// with a body encoded once: the refusals a flood meets most.
func staticError(e *api.Error) *api.Error {
	b, err := json.Marshal(e.Body())
	if err != nil {
		panic(err)
	}
	enc := &encodedError{status: e.Status(), body: append(b, '\n'), length: []string{strconv.Itoa(len(b) + 1)}}
	if e.RetryAfter > 0 {
		enc.retryAfter = []string{strconv.FormatInt(max(int64((e.RetryAfter+time.Second-1)/time.Second), 1), 10)}
	}
	staticBodies[e] = enc
	return e
}

// encodedError is a static error's answer. Its header values are shared
// by every answer (net/http only reads them; a Header.Add would copy).
type encodedError struct {
	status             int
	body               []byte
	length, retryAfter []string
}

func (b *encodedError) write(w http.ResponseWriter) {
	h := w.Header()
	if b.retryAfter != nil {
		h["Retry-After"] = b.retryAfter
	}
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = b.length
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body)
}

var jsonContentType = []string{"application/json"}

// HeaderRequestID names every answer's request, as the server's log does.
const HeaderRequestID = "X-Request-Id"

// newRequestID is 64 random bits, hex.
func newRequestID() string {
	return strconv.FormatUint(rand.Uint64(), 16)
}

// decode reads a JSON body strictly: at most api.MaxBodyBytes (413 above),
// no unknown fields, nothing after the value. Errors name the field.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	return decodeUpTo(w, r, v, optional, api.MaxBodyBytes)
}

// decodeUpTo is decode with a body limit of its own.
func decodeUpTo(w http.ResponseWriter, r *http.Request, v any, optional bool, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return bodyError(w, err, limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return api.BadField("body", "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return api.BadField("body", "unexpected data after the JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return api.BadField("body", "invalid JSON at offset %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return api.BadField(field, "must be %s, got JSON %s", typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return api.BadField(name, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.BadField("body", "truncated JSON")
	}
	return api.BadField("body", "%v", err)
}

// jsonErrorWriter turns the mux's own plain-text 404 and 405 answers into
// error bodies.
type jsonErrorWriter struct {
	http.ResponseWriter
	wrote bool
}

func (j *jsonErrorWriter) WriteHeader(code int) {
	if j.wrote {
		return
	}
	j.wrote = true
	h := j.Header()
	h.Del("Content-Type")
	h.Del("X-Content-Type-Options")
	c := api.CodeNotFound
	msg := "no such endpoint"
	if code == http.StatusMethodNotAllowed {
		c, msg = api.CodeBadRequest, "method not allowed; allowed: "+h.Get("Allow")
	}
	b, _ := json.Marshal(api.Errorf(c, "%s", msg).Body())
	h.Set("Content-Type", "application/json")
	j.ResponseWriter.WriteHeader(code)
	_, _ = j.ResponseWriter.Write(append(b, '\n'))
}

func (j *jsonErrorWriter) Write(b []byte) (int, error) {
	if !j.wrote {
		j.WriteHeader(http.StatusOK)
	}
	return len(b), nil // the mux's text body is replaced
}

// queryValue returns what r.URL.Query().Get(name) returns for the query
// raw, without parsing the parts of it that it does not need: a blocking
// query reads three parameters, and three parses were a fifth of what
// answering it allocated.
func queryValue(raw, name string) string {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" || strings.Contains(part, ";") {
			continue // as url.ParseQuery: skipped, or refused
		}
		k, v, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// parseIndex reads ?index=N (0 when absent).
func parseIndex(r *http.Request) (uint64, error) {
	return parseUintParam(r, "index")
}

// parseUintParam reads an optional non-negative integer query parameter.
func parseUintParam(r *http.Request, name string) (uint64, error) {
	v := queryValue(r.URL.RawQuery, name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, api.BadField(name, "%q is not a non-negative integer", v)
	}
	return n, nil
}

// parseWait reads ?wait= as a Go duration ("30s", "500ms") or a bare number
// of milliseconds; the default is def, the cap max.
func parseWait(r *http.Request, def, limit time.Duration) (time.Duration, error) {
	v := queryValue(r.URL.RawQuery, "wait")
	if v == "" {
		return def, nil
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(n) * time.Millisecond
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, api.BadField("wait", "%q is not a duration like 30s or a number of milliseconds", v)
	}
	if d < 0 {
		return 0, api.BadField("wait", "%q must not be negative", v)
	}
	return min(d, limit), nil
}

func parseBool(r *http.Request, name string) (bool, error) {
	v := queryValue(r.URL.RawQuery, name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, api.BadField(name, "%q is not true or false", v)
	}
	return b, nil
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
}
