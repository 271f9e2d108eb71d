package chaos

// Event is one line a chaos member (cmd/chaosmember) prints on stdout, as
// JSON. Times are Unix nanoseconds of the one machine's wall clock.
type Event struct {
	// Ev is what happened:
	//   - role: the member's role changed (Role, Token; At from the SDK);
	//   - live: the member holds a live Term (Token) and saw it live at
	//     every sample from From to To (printed every 50 ms, so a member
	//     killed mid-term left its last one);
	//   - term: a Term ended; From and To are its first and last live
	//     samples;
	//   - joined: the member joined (farm and master modes);
	//   - snap: a watcher's snapshot of Service at Index;
	//   - error: something the harness should see (Err).
	Ev        string     `json:"ev"`
	ID        string     `json:"id"`
	Role      string     `json:"role,omitempty"`
	Token     uint64     `json:"token,omitempty"`
	At        int64      `json:"at"`
	From      int64      `json:"from,omitempty"`
	To        int64      `json:"to,omitempty"`
	Service   string     `json:"service,omitempty"`
	Index     uint64     `json:"index,omitempty"`
	Instances []Instance `json:"instances,omitempty"`
	Master    uint64     `json:"master,omitempty"` // snap: the master's fencing token, 0 if none
	Err       string     `json:"err,omitempty"`
}

// Instance is an instance as a watcher's snapshot shows it.
type Instance struct {
	ID     string `json:"id"`
	Weight int    `json:"weight"`
	State  string `json:"state"`
}

// LedgerWrite is the body of a member's write to the fenced ledger.
type LedgerWrite struct {
	Tenant string `json:"tenant"`
	Member string `json:"member"`
	Token  uint64 `json:"token"`
}
