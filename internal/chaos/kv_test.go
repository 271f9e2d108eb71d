package chaos

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestCheckKVLinearizable: the KV model's verdicts on small histories,
// CAS refusals and unknown outcomes included.
func TestCheckKVLinearizable(t *testing.T) {
	unknown := int64(math.MaxInt64)
	w := func(key string, v int, call, ret int64) Op {
		return Op{Kind: "write", Key: key, Value: v, Call: call * ms, Return: ret * ms}
	}
	cas := func(key string, expect, v int, failed bool, call, ret int64) Op {
		o := Op{Client: 1, Kind: "cas", Key: key, Value: v, Expect: expect, Failed: failed, Call: call * ms, Return: ret * ms}
		if ret < 0 {
			o.Return = unknown
		}
		return o
	}
	rd := func(k0 int, call, ret int64) Op {
		read := map[string]int{}
		if k0 != absent {
			read["k0"] = k0
		}
		return Op{Client: 2, Kind: "read", Read: read, Call: call * ms, Return: ret * ms}
	}
	tests := []struct {
		name  string
		ops   []Op
		final Op
		want  porcupine.CheckResult
	}{
		{"CAS applied and refused", []Op{w("k0", 1, 0, 10), cas("k0", 1, 2, false, 20, 30), cas("k0", 1, 3, true, 40, 50)}, rd(2, 60, 70), porcupine.Ok},
		{"create only", []Op{cas("k0", absent, 2, false, 0, 10), cas("k0", absent, 3, true, 20, 30)}, rd(2, 40, 50), porcupine.Ok},
		{"two CASes from one value", []Op{w("k0", 1, 0, 10), cas("k0", 1, 2, false, 20, 30), cas("k0", 1, 3, false, 40, 50)}, rd(3, 60, 70), porcupine.Illegal},
		{"a refusal nothing explains", []Op{w("k0", 1, 0, 10), cas("k0", 1, 7, true, 20, 30)}, rd(1, 40, 50), porcupine.Illegal},
		{"a refusal an unknown write explains", []Op{w("k0", 1, 0, 10), {Kind: "write", Key: "k0", Value: 5, Call: 12 * ms, Return: unknown},
			cas("k0", 1, 7, true, 20, 30), w("k0", 9, 40, 50)}, rd(9, 60, 70), porcupine.Ok},
		{"an unknown CAS that never applied", []Op{w("k0", 1, 0, 10), cas("k0", 2, 3, false, 20, -1)}, rd(1, 40, 50), porcupine.Ok},
		{"an unknown CAS that applied", []Op{w("k0", 1, 0, 10), cas("k0", 1, 3, false, 20, -1), rd(3, 40, 50)}, rd(3, 60, 70), porcupine.Ok},
		{"an unknown delete that never applied", []Op{w("k0", 1, 0, 10), {Kind: "write", Key: "k0", Value: absent, Call: 20 * ms, Return: unknown}}, rd(1, 40, 50), porcupine.Ok},
		{"a stale read", []Op{w("k0", 1, 0, 10), w("k0", 2, 20, 30), rd(1, 40, 50)}, rd(2, 60, 70), porcupine.Illegal},
		{"a lost write", []Op{w("k0", 1, 0, 10), w("k0", 2, 20, 30)}, rd(1, 60, 70), porcupine.Illegal},
	}
	for _, tt := range tests {
		tt.final.Client = 99
		if got, _ := CheckKVLinearizable(tt.ops, tt.final, 10*time.Second); got != tt.want {
			t.Errorf("%s: CheckKVLinearizable = %v, want %v", tt.name, got, tt.want)
		}
	}
}
