package proctest

import (
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLaunch: a launched process's lines are kept and sent to subscribers,
// whose channels close when it exits; Kill ends it by PID.
func TestLaunch(t *testing.T) {
	p, err := Launch(Spec{Name: "sh", Bin: "/bin/sh", Args: []string{"-c", "echo one; exec sleep 60"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	sub := p.Subscribe()
	for deadline := time.Now().Add(10 * time.Second); len(p.Lines()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no line in 10s")
		}
	}
	p.Kill()
	var got []string
	for l := range sub { // closed at the exit
		got = append(got, l)
	}
	if lines := p.Lines(); !slices.Equal(lines, []string{"one"}) || len(got) > 1 {
		t.Errorf("Lines() = %q, subscriber got %q; want [one]", lines, got)
	}
	if p.ExitErr() == nil {
		t.Error("ExitErr() = nil after a kill")
	}
	if c := p.Subscribe(); !closed(c) {
		t.Error("Subscribe() after the exit is not closed")
	}
}

func closed(c <-chan string) bool {
	select {
	case _, ok := <-c:
		return !ok
	case <-time.After(time.Second):
		return false
	}
}

// TestPortAndWaitTCP: Port never gives a port twice, and WaitTCP sees a
// listener.
func TestPortAndWaitTCP(t *testing.T) {
	a, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Port()
	if err != nil || a == b {
		t.Fatalf("Port() = %d then %d, %v; want two ports", a, b, err)
	}
	l, err := net.Listen("tcp", FreePort(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := WaitTCP(l.Addr().String(), 5*time.Second); err != nil {
		t.Fatalf("WaitTCP(listener) = %v", err)
	}
}
