package fence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// Header is the HTTP header that carries a fencing token, in decimal.
const Header = "Rafting-Fencing-Token"

// CodeStaleToken is the error code of Middleware's 409 answer to a stale
// token. The 400 answers use the project's "bad_request", so a client that
// knows only the api package's codes still reads them; it reads
// stale_token as a 409 conflict.
const CodeStaleToken = "stale_token"

// SetHeader sets h's fencing token header to token. A token of 0 is no
// token: SetHeader removes the header, and the resource refuses the request.
func SetHeader(h http.Header, token uint64) {
	// Every spelling of the name goes, not only the canonical one: a
	// value stored under "rafting-fencing-token" directly in the map
	// would otherwise travel beside the new one.
	for k := range h {
		if strings.EqualFold(k, Header) {
			delete(h, k)
		}
	}
	if token != 0 {
		h.Set(Header, strconv.FormatUint(token, 10))
	}
}

// ParseToken parses a fencing token in its one accepted form: the decimal
// digits of a number from 1 to 2^64-1, without a sign, spaces or leading
// zeros, as strconv.FormatUint writes it. It returns ErrNoToken for "0" and
// ErrMalformedToken for anything else it refuses, wrapped with the value
// (clipped to 32 bytes).
func ParseToken(s string) (uint64, error) {
	if s == "" || len(s) > len("18446744073709551615") || s[0] == '0' && len(s) > 1 {
		return 0, fmt.Errorf("%q: %w", clip(s), ErrMalformedToken)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q: %w", clip(s), ErrMalformedToken)
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, fmt.Errorf("%q: %w (over 2^64-1)", clip(s), ErrMalformedToken)
		}
		n = n*10 + d
	}
	if n == 0 {
		return 0, fmt.Errorf("%q: %w", s, ErrNoToken)
	}
	return n, nil
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// FromRequest returns the fencing token r carries in Header. The header must
// appear once, with a value ParseToken accepts (net/http has already trimmed
// the spaces around a value read from the wire). A missing header or a 0
// gives an error that wraps ErrNoToken; anything else refused wraps
// ErrMalformedToken. Each error names the header.
func FromRequest(r *http.Request) (uint64, error) {
	vs := r.Header.Values(Header)
	switch len(vs) {
	case 0:
		return 0, fmt.Errorf("%s missing: %w", Header, ErrNoToken)
	case 1:
	default:
		return 0, fmt.Errorf("%s: %d values, want one: %w", Header, len(vs), ErrMalformedToken)
	}
	t, err := ParseToken(vs[0])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", Header, err)
	}
	return t, nil
}

// Middleware fences next with g. It answers, in the project's error shape
// ({"error": {"code": ..., "message": ...}}):
//
//   - 400 bad_request to a request whose Header is missing, 0, repeated or
//     malformed; the message names the header;
//   - 409 stale_token to a request whose token is lower than the highest g
//     has admitted; the message names both, and the error object carries
//     them as "token" and "highest" (CheckResponse reads them back);
//   - 503 unavailable if the request's context ended while it waited for g.
//
// It serves any other request with next inside g.Do: requests with tokens
// are served one at a time, so a request with an older token can never
// write after one with a newer token was admitted (see Guard.Do). That
// holds only if next has finished its write when it returns: do not put a
// handler that returns early while its work goes on (http.TimeoutHandler,
// a goroutine left writing) between Middleware and the write. Put it
// in front of the writes to the resource g guards, not its reads. When the
// store behind the handler checks the token itself, atomically with its
// write (the SQL recipe in the package documentation), the store is the
// fence: read the token with FromRequest and pass it down instead.
func Middleware(g *Guard, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := FromRequest(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, errorDetail{Code: "bad_request", Message: err.Error()})
			return
		}
		served := false
		err = g.Do(r.Context(), token, func() error {
			served = true
			next.ServeHTTP(w, r)
			return nil
		})
		if served {
			return
		}
		var stale *StaleTokenError
		if errors.As(err, &stale) {
			writeError(w, http.StatusConflict, errorDetail{Code: CodeStaleToken,
				Message: fmt.Sprintf("fencing token %d is stale: a newer master has written with %d", stale.Token, stale.Highest),
				Token:   stale.Token, Highest: stale.Highest})
			return
		}
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: "unavailable",
			Message: fmt.Sprintf("the request ended while it waited for the fence: %v", err)})
	})
}

// errorBody is the project's error body (api.ErrorBody), with the numbers
// of a stale token; fence repeats its shape so as to import nothing.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Token   uint64 `json:"token,omitempty"`
	Highest uint64 `json:"highest,omitempty"`
}

func writeError(w http.ResponseWriter, status int, d errorDetail) {
	b, _ := json.Marshal(errorBody{Error: d}) // cannot fail: strings and numbers
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// maxErrorBody bounds what CheckResponse reads; Middleware's answers are
// far smaller.
const maxErrorBody = 4 << 10

// CheckResponse returns a *StaleTokenError if resp is Middleware's 409
// stale_token answer, and nil for anything else: another status, another
// code, or a body it cannot read or decode. It reads at most 4 KiB of a
// 409's body and puts back what it read, so resp.Body still reads whole
// and the caller still closes it.
func CheckResponse(resp *http.Response) error {
	if resp == nil || resp.StatusCode != http.StatusConflict || resp.Body == nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body = readCloser{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	if err != nil {
		return nil
	}
	return decodeStale(b)
}

type readCloser struct {
	io.Reader
	io.Closer
}

func decodeStale(b []byte) error {
	var body errorBody
	if json.Unmarshal(b, &body) != nil || body.Error.Code != CodeStaleToken {
		return nil
	}
	d := body.Error
	if d.Token == 0 || d.Token >= d.Highest {
		return nil // not an answer Middleware gives
	}
	return &StaleTokenError{Token: d.Token, Highest: d.Highest}
}

// Transport stamps every request with the token of the caller's current
// mastership and refuses, without sending it, a request made while there is
// none. It is the client side of Middleware:
//
//	client := &http.Client{Transport: &fence.Transport{Token: func() (uint64, bool) {
//		t, ok := m.Mastership() // m is an *sdk.Member
//		return t.Token, ok
//	}}}
//
// A Transport is safe for concurrent use when its Token func is. To also
// cancel a request when the term ends, build it with the term's context
// (sdk.Term.Ctx).
type Transport struct {
	// Token returns the fencing token to send and whether there is one. It
	// is called once per request. When it returns false (or 0), RoundTrip
	// closes the request's body and returns an error wrapping ErrNoToken;
	// nothing is sent. A nil Token refuses every request.
	Token func() (uint64, bool)
	// Base sends the stamped request; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// RoundTrip sends a copy of req with Header set to the current token,
// replacing any value req had, or refuses req as Token describes.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var token uint64
	ok := false
	if t.Token != nil {
		token, ok = t.Token()
	}
	if !ok || token == 0 {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("not master, refused before sending: %w", ErrNoToken)
	}
	r := req.Clone(req.Context())
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	SetHeader(r.Header, token)
	return t.base().RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of Base, if it can; an
// http.Client calls it through its own CloseIdleConnections.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base().(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}
