package chaos

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"
)

// Ledger is the resource the masters guard: an HTTP endpoint in the
// harness that accepts a write only if its fencing token is not lower than
// the highest it accepted for that tenant (409 otherwise), and logs every
// attempt. The link to it has no faults: it stands for storage that a
// stale master can still reach.
type Ledger struct {
	// IgnoreTokens is the negative control of the ledger's check: the
	// ledger accepts every write, whatever its token.
	IgnoreTokens bool

	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	highest map[string]uint64
	log     []LedgerEntry
}

// LedgerEntry is one write the ledger was asked for.
type LedgerEntry struct {
	LedgerWrite
	At       int64 `json:"at"` // Unix ns, when the ledger decided
	Accepted bool  `json:"accepted"`
}

// NewLedger starts a ledger on a free loopback port.
func NewLedger() (*Ledger, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Ledger{ln: ln, highest: map[string]uint64{}}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

// URL is the write endpoint.
func (l *Ledger) URL() string { return "http://" + l.ln.Addr().String() + "/write" }

// Close stops the ledger.
func (l *Ledger) Close() { _ = l.srv.Close() }

func (l *Ledger) serve(w http.ResponseWriter, r *http.Request) {
	var lw LedgerWrite
	if err := json.NewDecoder(r.Body).Decode(&lw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !l.Write(lw) {
		w.WriteHeader(http.StatusConflict)
	}
}

// Write applies one write and reports whether the ledger accepted it.
func (l *Ledger) Write(lw LedgerWrite) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := lw.Token >= l.highest[lw.Tenant] || l.IgnoreTokens
	if ok {
		l.highest[lw.Tenant] = max(l.highest[lw.Tenant], lw.Token)
	}
	l.log = append(l.log, LedgerEntry{LedgerWrite: lw, At: time.Now().UnixNano(), Accepted: ok})
	return ok
}

// Log is every write so far, in the order the ledger decided them.
func (l *Ledger) Log() []LedgerEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LedgerEntry(nil), l.log...)
}
