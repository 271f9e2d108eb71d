package api

import (
	"encoding/json"
	"testing"
)

// TestMasterUpdate: a changes frame leaves master out when it did not
// change, says null when the service has none now, and the record when it
// has one; a client decoding any frame tells the three apart.
func TestMasterUpdate(t *testing.T) {
	m := &Master{Instance: "w-1", SessionTag: "91c2", FencingToken: 7}
	tests := []struct {
		u    MasterUpdate
		want string
	}{
		{MasterUpdate{}, `{"type":"changes","w":1,"index":5}`},
		{MasterUpdate{Set: true}, `{"type":"changes","w":1,"index":5,"master":null}`},
		{MasterUpdate{Set: true, Master: m}, `{"type":"changes","w":1,"index":5,"master":{"instance":"w-1","session_tag":"91c2","fencing_token":7,"since":"0001-01-01T00:00:00Z","releasing":false}}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(ChangesFrame{Type: FrameChanges, W: 1, Index: 5, Master: tt.u})
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%+v) = %s, %v, want %s", tt.u, b, err, tt.want)
		}
		var f ServerFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Master.Set != tt.u.Set || (f.Master.Master == nil) != (tt.u.Master == nil) {
			t.Errorf("Unmarshal(%s).Master = %+v, want %+v", b, f.Master, tt.u)
		}
	}
}
