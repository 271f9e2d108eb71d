package sdk

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
)

// TestEqualIndexAnswerBelieved is the SDK half of
// server/session's TestBatchEventsCarryTheirIndex. The leader sends two
// `master` events stamped with one index I (a batch: A granted, then
// marked releasing by someone else); the member reads the first, and its
// stream breaks before the second (a connection reset between two lines).
// From then on, every keepalive answer is read at I (no entry applied
// since) and lists the mastership as releasing: the leader counts none of
// them as a clean promise and releases the mastership once the last clean
// one lapsed (about 1 s later), granting the successor. The member
// ignores the answers' record (not strictly newer than I) but takes their
// promise, so it keeps acting as master with a fresh promise past that
// release: two masters until some later index reaches it.
func TestEqualIndexAnswerBelieved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := roleLoopMember(t)
		s := m.sess
		const token = 1<<40 | 8
		// Before the batch: A is a standby with clean promises.
		lastClean := time.Now()
		m.renewed(s, lastClean, &api.KeepaliveResponse{LeaseMs: 1000, Index: 7, Masters: []api.HeldMastership{}}, "leader")
		time.Sleep(50 * time.Millisecond)
		// The first event of the batch, stamped with the batch's last index.
		m.observe(9, &api.Master{Instance: "i", SessionTag: s.tag, FencingToken: token})
		// The stream breaks; the second event (releasing, index 9) is lost.
		releasing := []api.HeldMastership{{Service: "s", Instance: "i", FencingToken: token, Releasing: true}}
		for time.Since(lastClean) < 1200*time.Millisecond {
			time.Sleep(250 * time.Millisecond)
			// An answer read at index 9: the truth there is "releasing".
			m.renewed(s, time.Now(), &api.KeepaliveResponse{LeaseMs: 1000, Index: 9, Masters: releasing}, "leader")
			if m.IsMaster() {
				t.Errorf("%v after the last clean promise (the leader releases at 1 s): the member is Master on an answer that lists its mastership releasing: %s",
					time.Since(lastClean), Debug(m))
			}
		}
	})
}
