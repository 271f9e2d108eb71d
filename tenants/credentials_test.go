package tenants

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

func TestHash(t *testing.T) {
	h := HashToken("rft_acme_secret")
	if len(h.String()) != 64 || strings.ToLower(h.String()) != h.String() {
		t.Fatalf("String() = %q, want 64 lowercase hex digits", h.String())
	}
	if !h.Equal(HashToken("rft_acme_secret")) || h.Equal(HashToken("rft_acme_secreT")) {
		t.Fatal("Equal() does not tell hashes apart")
	}
	p, err := ParseHash(h.String())
	if err != nil || p != h {
		t.Fatalf("ParseHash(String()) = %v, %v, want %v", p, err, h)
	}
	p, err = ParseHash(strings.ToUpper(h.String()))
	if err != nil || p != h {
		t.Fatalf("ParseHash(upper) = %v, %v, want %v", p, err, h)
	}
	for _, bad := range []string{"", "00", h.String()[:63], h.String() + "0", strings.Repeat("g", 64), " " + h.String()[1:]} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("ParseHash(%q) error = %v, want ErrMalformedHash", bad, err)
		}
	}
	if !(Hash{}).IsZero() || h.IsZero() {
		t.Error("IsZero() wrong")
	}
}

func TestHashKnownVector(t *testing.T) {
	// echo -n abc | sha256sum
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashToken("abc").String(); got != abc {
		t.Fatalf("HashToken(abc) = %s, want %s", got, abc)
	}
}

func TestHashJSON(t *testing.T) {
	h := HashToken("rft_acme_" + NewSecret())
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"` + h.String() + `"`; string(b) != want {
		t.Fatalf("json.Marshal(Hash) = %s, want %s", b, want)
	}
	var back Hash
	if err := json.Unmarshal(b, &back); err != nil || back != h {
		t.Fatalf("json.Unmarshal(%s) = %v, %v, want %v", b, back, err, h)
	}
	// As a map key too.
	m := map[Hash]string{h: "acme"}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var mback map[Hash]string
	if err := json.Unmarshal(b, &mback); err != nil || mback[h] != "acme" {
		t.Fatalf("json round trip of map = %v, %v", mback, err)
	}
	for _, bad := range []string{`"xyz"`, `12`, `"` + strings.Repeat("0", 62) + `"`} {
		var x Hash
		if err := json.Unmarshal([]byte(bad), &x); err == nil {
			t.Errorf("json.Unmarshal(%s) = nil error", bad)
		}
	}
}

func TestCredentialsJSON(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	a, b := HashToken("a"), HashToken("b")
	tests := []Credentials{
		{Current: a},
		{Current: b, Previous: &a, PreviousValidUntil: now.Add(time.Hour)},
	}
	for _, c := range tests {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Credentials
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s) error = %v", data, err)
		}
		if back.Current != c.Current || (back.Previous == nil) != (c.Previous == nil) ||
			(c.Previous != nil && *back.Previous != *c.Previous) || !back.PreviousValidUntil.Equal(c.PreviousValidUntil) {
			t.Errorf("json round trip of %s = %+v, want %+v", data, back, c)
		}
	}
	data, _ := json.Marshal(Credentials{Current: a})
	if want := `{"current":"` + a.String() + `"}`; string(data) != want {
		t.Errorf("json.Marshal(current only) = %s, want %s", data, want)
	}
}

func TestCredentialsMatch(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	oldH, newH, other := HashToken("old"), HashToken("new"), HashToken("other")

	c, changed := Rotate(Credentials{Current: oldH}, newH, now, 10*time.Minute)
	if !changed {
		t.Fatal("Rotate() changed = false, want true")
	}
	tests := []struct {
		name string
		c    Credentials
		h    Hash
		at   time.Time
		want bool
	}{
		{"current", c, newH, now, true},
		{"current much later", c, newH, now.Add(24 * time.Hour), true},
		{"previous inside window", c, oldH, now, true},
		{"previous just before end", c, oldH, now.Add(10*time.Minute - time.Nanosecond), true},
		{"previous at end", c, oldH, now.Add(10 * time.Minute), false},
		{"previous after end", c, oldH, now.Add(time.Hour), false},
		{"other", c, other, now, false},
		{"zero hash against zero credentials", Credentials{}, Hash{}, now, false},
		{"anything against zero credentials", Credentials{}, newH, now, false},
		{"zero hash against current", c, Hash{}, now, false},
		{"previous without window", Credentials{Current: newH, Previous: &oldH}, oldH, now, false},
		{"zero previous with window", Credentials{Current: newH, Previous: new(Hash), PreviousValidUntil: now.Add(time.Hour)}, Hash{}, now, false},
	}
	for _, tt := range tests {
		if got := tt.c.Match(tt.h, tt.at); got != tt.want {
			t.Errorf("%s: Match() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRotate(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	h1, h2, h3 := HashToken("one"), HashToken("two"), HashToken("three")
	c0 := Credentials{Current: h1}

	c1, changed := Rotate(c0, h2, now, DefaultPreviousValid)
	if !changed || c1.Current != h2 || c1.Previous == nil || *c1.Previous != h1 || !c1.PreviousValidUntil.Equal(now.Add(time.Hour)) {
		t.Fatalf("Rotate() = %+v, %v", c1, changed)
	}
	if c0.Current != h1 || c0.Previous != nil {
		t.Fatalf("Rotate() changed its argument: %+v", c0)
	}

	// A retry (later, with another window) changes nothing.
	c1r, changed := Rotate(c1, h2, now.Add(time.Minute), 0)
	if changed || c1r.Current != c1.Current || c1r.Previous != c1.Previous || !c1r.PreviousValidUntil.Equal(c1.PreviousValidUntil) {
		t.Fatalf("Rotate(retry) = %+v, %v, want %+v unchanged", c1r, changed, c1)
	}
	if !c1r.Match(h1, now.Add(time.Minute)) {
		t.Fatal("the retry revoked the previous token")
	}

	// A second rotation keeps one previous token: h1 is gone.
	c2, changed := Rotate(c1, h3, now.Add(time.Minute), time.Minute)
	if !changed || c2.Current != h3 || *c2.Previous != h2 {
		t.Fatalf("Rotate() = %+v, %v", c2, changed)
	}
	if c2.Match(h1, now.Add(time.Minute)) || !c2.Match(h2, now.Add(time.Minute)) || !c2.Match(h3, now.Add(time.Minute)) {
		t.Fatal("after two rotations, want h2 and h3 to match and h1 not")
	}

	// 0 revokes the previous token at once; so does a negative window.
	for _, d := range []time.Duration{0, -time.Second} {
		c3, changed := Rotate(c2, h1, now, d)
		if !changed || c3.Current != h1 || c3.Previous != nil || !c3.PreviousValidUntil.IsZero() {
			t.Fatalf("Rotate(%v) = %+v, %v, want no previous", d, c3, changed)
		}
		if c3.Match(h3, now) || c3.Match(h2, now) || !c3.Match(h1, now) {
			t.Fatalf("Rotate(%v): only the new token may match", d)
		}
	}

	// Rotating zero credentials (no token yet) keeps no zero previous.
	c4, changed := Rotate(Credentials{}, h1, now, time.Hour)
	if !changed || c4.Current != h1 || c4.Previous != nil {
		t.Fatalf("Rotate(zero) = %+v, %v", c4, changed)
	}
}

func TestResolvePreviousValid(t *testing.T) {
	ms := func(v int64) *int64 { return &v }
	tests := []struct {
		in   *int64
		want time.Duration
		ok   bool
	}{
		{nil, time.Hour, true},
		{ms(0), 0, true},
		{ms(1500), 1500 * time.Millisecond, true},
		{ms(MaxPreviousValidMs), 30 * 24 * time.Hour, true},
		{ms(MaxPreviousValidMs + 1), 0, false},
		{ms(-1), 0, false},
	}
	for _, tt := range tests {
		got, err := ResolvePreviousValid(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ResolvePreviousValid(%v) = %v, %v, want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
		var ae *api.Error
		if err != nil && (!errors.As(err, &ae) || !strings.HasPrefix(ae.Message, "previous_valid_ms: ")) {
			t.Errorf("ResolvePreviousValid(%v) error = %v, want one naming previous_valid_ms", tt.in, err)
		}
	}
}
