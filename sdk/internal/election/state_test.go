package election

import (
	"testing"
	"time"
)

func TestMargin(t *testing.T) {
	tests := []struct {
		lease, want time.Duration
	}{
		{0, 50 * time.Millisecond},
		{time.Second, 52 * time.Millisecond},
		{200 * time.Millisecond, 50*time.Millisecond + 400*time.Microsecond},
		{10 * time.Second, 70 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Margin(tt.lease); got != tt.want {
			t.Errorf("Margin(%v) = %v, want %v", tt.lease, got, tt.want)
		}
	}
}

// TestPromiseElapsed: elapsed time is the larger of the monotonic and
// wall-clock differences, so a host suspended (monotonic clock stopped)
// or a wall clock stepped back never extends the belief.
func TestPromiseElapsed(t *testing.T) {
	sent := time.Now()
	p := NewPromise(sent, time.Second)
	if !p.Valid(sent) || p.Remaining(sent) != time.Second-Margin(time.Second) {
		t.Fatalf("remaining at send = %v", p.Remaining(sent))
	}
	// Monotonic says 100 ms, wall says 2 s (the host slept): lapsed.
	suspended := NewPromise(sent, time.Second)
	suspended.Wall = suspended.Wall.Add(-2 * time.Second)
	if suspended.Valid(sent.Add(100 * time.Millisecond)) {
		t.Fatal("a promise is believed after a suspension the wall clock saw")
	}
	// Wall clock stepped back 5 s: the monotonic clock still counts.
	stepped := NewPromise(sent, time.Second)
	stepped.Wall = stepped.Wall.Add(5 * time.Second)
	if stepped.Valid(sent.Add(time.Second)) {
		t.Fatal("a promise is believed past its lease after a wall-clock step back")
	}
	if (Promise{}).Valid(sent) || NewPromise(sent, 0).Valid(sent) {
		t.Fatal("no promise (or lease 0) is valid")
	}
}

func TestRoleState(t *testing.T) {
	now := time.Now()
	fresh := NewPromise(now, time.Second)
	old := NewPromise(now.Add(-2*time.Second), time.Second)
	rec := &Record{Token: 7}
	tests := []struct {
		name  string
		st    State
		want  Role
		token uint64
	}{
		{"joining", State{Phase: PhaseJoining}, Starting, 0},
		{"starting, even if named master", State{Phase: PhaseStarting, Rec: rec, Promise: fresh}, Starting, 0},
		{"ready farm", State{Phase: PhaseReady, Farm: true, Rec: rec, Promise: fresh}, Standby, 0},
		{"standby", State{Phase: PhaseReady, Promise: fresh}, Standby, 0},
		{"master", State{Phase: PhaseReady, Rec: rec, Promise: fresh}, Master, 7},
		{"releasing", State{Phase: PhaseReady, Rec: &Record{Token: 7, Releasing: true}, Promise: fresh}, Standby, 0},
		{"resigning", State{Phase: PhaseReady, Rec: rec, Promise: fresh, Resigning: true}, Standby, 0},
		{"suspended", State{Phase: PhaseReady, Rec: rec, Promise: old, Mastered: 7}, Suspended, 7},
		{"granted without a promise yet", State{Phase: PhaseReady, Rec: rec, Promise: old, Mastered: 3}, Standby, 0},
		{"draining", State{Phase: PhaseDraining, Rec: rec, Promise: fresh}, Draining, 0},
		{"left", State{Phase: PhaseLeft, Rec: rec, Promise: fresh}, Left, 0},
	}
	for _, tt := range tests {
		if got, tok := tt.st.Role(now); got != tt.want || tok != tt.token {
			t.Errorf("%s: role() = %v, %d; want %v, %d", tt.name, got, tok, tt.want, tt.token)
		}
	}
}

func TestRoleString(t *testing.T) {
	for r, want := range map[Role]string{Starting: "starting", Standby: "standby", Master: "master",
		Suspended: "suspended", Draining: "draining", Left: "left", 0: "Role(0)", 9: "Role(9)"} {
		if got := r.String(); got != want {
			t.Errorf("Role(%d).String() = %q, want %q", int(r), got, want)
		}
	}
}
