package cluster

import (
	"testing"
	"time"
)

// TestUnreachable: the transport's lines about a peer it cannot reach are
// told from its other errors, and name the peer.
func TestUnreachable(t *testing.T) {
	tests := []struct {
		msg, target string
		ok          bool
	}{
		{"send batch failed, target 127.0.0.1:20309 (write tcp 127.0.0.1:54436->127.0.0.1:20309: write: connection reset by peer), 2", "127.0.0.1:20309", true},
		{"send batch failed, taret node 10.0.0.2:7071 (write tcp 10.0.0.1:1->10.0.0.2:7071: write: broken pipe), 1", "10.0.0.2:7071", true},
		{"Nodehost 00000000-0000-4000-8000-000000000003 failed to get a connection to 127.0.0.1:19183, dial tcp 127.0.0.1:19183: connect: connection refused", "127.0.0.1:19183", true},
		{"send batch failed, target 127.0.0.1:1 (tls: bad certificate), 1", "", false},
		{"header crc check failed", "", false},
		{"invalid did or binver, 1, 2, 3, 4", "", false},
	}
	for _, tt := range tests {
		target, ok := unreachable(tt.msg)
		if target != tt.target || ok != tt.ok {
			t.Errorf("unreachable(%q) = %q, %v; want %q, %v", tt.msg, target, ok, tt.target, tt.ok)
		}
	}
	n := noise{last: map[string]time.Time{}}
	now := time.Now()
	if !n.first("a", now) || n.first("a", now.Add(time.Second)) || !n.first("b", now) || !n.first("a", now.Add(time.Minute)) {
		t.Error("noise.first: want the first line per peer a minute")
	}
}
