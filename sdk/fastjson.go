package sdk

import (
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/rafting/rafting/api"
)

// fastService decodes a service answer as Rafting's servers write it —
// compact JSON of api.ServiceResponse's shape, plain strings — without
// reflection. Every watcher decodes every change of its service, and
// encoding/json spends most of that change's CPU in a client: validating
// the whole answer first, then decoding it through reflection.
//
// It accepts a strict subset of JSON: the known keys, each at most once and
// spelled exactly; strings without escapes or control characters, in valid
// UTF-8; integers without a fraction or an exponent that fit their field;
// null only where the answer has a pointer. For anything else ok is false
// and the caller decodes with encoding/json, so that what this accepts
// decodes exactly as encoding/json would decode it (FuzzFastService checks
// this), and an instance without a weight gets api.DefaultWeight.
//
// With k (nil for none), an instance encoded exactly as in the last answer
// k took is not decoded again, and k takes this answer when it decodes.
func fastService(b []byte, k *known) (r *api.ServiceResponse, ok bool) {
	d := decoder{b: b, k: k}
	if k != nil {
		clear(k.spare) // no references kept from two answers ago
		d.next = k.spare[:0]
	}
	r = new(api.ServiceResponse)
	_, ok = d.fields(func(key []byte) (bit uint, ok bool) {
		switch string(key) {
		case "index":
			bit = 1 << 0
			r.Index, ok = d.uint()
		case "modify_index":
			bit = 1 << 1
			r.ModifyIndex, ok = d.uint()
		case "service":
			bit = 1 << 2
			r.Service, ok = d.str()
		case "instances":
			bit, ok = 1<<3, d.instances(r, min(bytes.Count(b, []byte(`"id":`)), 1024))
		case "master":
			bit = 1 << 4
			if d.null() {
				ok = true
				break
			}
			r.Master = new(api.Master)
			ok = d.master(r.Master)
		case "policy":
			bit, ok = 1<<5, d.policy(&r.Policy)
		}
		return bit, ok
	})
	d.ws()
	if !ok || d.i != len(b) {
		return nil, false
	}
	if k != nil {
		k.body, k.prev, k.spare = b, d.next, k.prev
	}
	return r, true
}

// known is a watcher's memory of the instances in the last answer it
// decoded, with their encodings. A change usually leaves most instances of
// an answer as they were, byte for byte: those are copied from here
// instead of decoded again, so that a change costs a watcher a scan of the
// answer and the decoding of what changed. Servers write instances sorted
// by ID, and the answers are matched in one pass on that order (answers in
// another order decode alike, only slower). The decoded values are shared
// with the snapshots made from them, which never modify them.
type known struct {
	body  []byte          // the answer prev's encodings are in
	prev  []knownInstance // its instances, in its order
	spare []knownInstance // the slice before, reused for the next
}

type knownInstance struct {
	off, end int // the instance's encoding: body[off:end]
	in       api.Instance
}

// forget drops what k knows (an answer the fast path did not take).
func (k *known) forget() {
	k.body, k.prev = nil, nil
}

// decoder reads b from i on; every method returns false, having read any
// amount, when what it meets is not what it accepts.
type decoder struct {
	b    []byte
	i    int
	k    *known          // nil: decode every instance
	next []knownInstance // this answer's instances, for k
	j    int             // k.prev before j sorts before this answer's place
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte reads c, after any whitespace.
func (d *decoder) byte(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads an object, calling member for each key with the decoder
// at the key's value.
func (d *decoder) object(member func(key []byte) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	for {
		k, ok := d.raw()
		if !ok || !d.byte(':') || !member(k) {
			return false
		}
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

// fields reads an object whose keys field decodes: for each key it returns
// the key's bit, 0 for a key it does not take, and whether the value
// decoded. A key met twice fails the object. seen has the bits of the keys
// read.
func (d *decoder) fields(field func(key []byte) (bit uint, ok bool)) (seen uint, ok bool) {
	ok = d.object(func(key []byte) bool {
		bit, ok := field(key)
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
	return seen, ok
}

// raw reads a string and returns its bytes, which alias b.
func (d *decoder) raw() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start, ascii := d.i, true
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// intern returns s as a string, the one of known it equals if any, so
// that the values every instance repeats cost no allocation.
func intern(s []byte, known ...string) string {
	for _, k := range known {
		if string(s) == k {
			return k
		}
	}
	return string(s)
}

func (d *decoder) str() (string, bool) {
	s, ok := d.raw()
	return string(s), ok
}

func (d *decoder) null() bool {
	d.ws()
	if bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

func (d *decoder) bool() (bool, bool) {
	d.ws()
	switch rest := d.b[d.i:]; {
	case bytes.HasPrefix(rest, []byte("true")):
		d.i += 4
		return true, true
	case bytes.HasPrefix(rest, []byte("false")):
		d.i += 5
		return false, true
	}
	return false, false
}

// digits reads an integer of at most 18 digits, without a sign: one that
// fits an int64.
func (d *decoder) digits() (uint64, bool) {
	start := d.i
	var v uint64
	for ; d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9'; d.i++ {
		v = v*10 + uint64(d.b[d.i]-'0')
	}
	n := d.i - start
	if n == 0 || n > 18 || (n > 1 && d.b[start] == '0') {
		return 0, false
	}
	// A fraction or an exponent makes it a number no integer field takes.
	return v, d.i == len(d.b) || (d.b[d.i] != '.' && d.b[d.i] != 'e' && d.b[d.i] != 'E')
}

func (d *decoder) uint() (uint64, bool) {
	d.ws()
	return d.digits()
}

func (d *decoder) int64() (int64, bool) {
	d.ws()
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	v, ok := d.digits()
	if neg {
		return -int64(v), ok
	}
	return int64(v), ok
}

func (d *decoder) int() (int, bool) {
	v, ok := d.int64()
	return int(v), ok && int64(int(v)) == v
}

// time reads a string as encoding/json does for a time.Time: through its
// UnmarshalJSON.
func (d *decoder) time(t *time.Time) bool {
	d.ws()
	start := d.i
	if _, ok := d.raw(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.b[start:d.i]) == nil
}

// instances reads the array of instances, of about n elements (a hint).
func (d *decoder) instances(r *api.ServiceResponse, n int) bool {
	if d.null() {
		return true
	}
	if !d.byte('[') {
		return false
	}
	r.Instances = make([]api.Instance, 0, n)
	if d.byte(']') {
		return true
	}
	for {
		d.ws()
		start := d.i
		if in, n, ok := d.known(); ok {
			r.Instances = append(r.Instances, in)
			d.i += n
		} else {
			r.Instances = append(r.Instances, api.Instance{})
			if !d.instance(&r.Instances[len(r.Instances)-1]) {
				return false
			}
		}
		if d.k != nil {
			d.next = append(d.next, knownInstance{off: start, end: d.i, in: r.Instances[len(r.Instances)-1]})
		}
		if d.byte(']') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

// known returns the instance k decoded from an encoding that b repeats at
// i, and the encoding's length. An object's bytes decide where it ends, so
// an answer that starts with the bytes of an object decoded before holds
// that object there, whatever follows. The ID only finds the candidate.
func (d *decoder) known() (api.Instance, int, bool) {
	if d.k == nil {
		return api.Instance{}, 0, false
	}
	id, ok := bytes.CutPrefix(d.b[d.i:], []byte(`{"id":"`))
	if !ok {
		return api.Instance{}, 0, false
	}
	n := bytes.IndexByte(id, '"')
	if n < 0 {
		return api.Instance{}, 0, false
	}
	id = id[:n]
	prev := d.k.prev
	for d.j < len(prev) && prev[d.j].in.ID < string(id) {
		d.j++
	}
	if d.j == len(prev) {
		return api.Instance{}, 0, false
	}
	e := &prev[d.j]
	if enc := d.k.body[e.off:e.end]; e.in.ID == string(id) && bytes.HasPrefix(d.b[d.i:], enc) {
		return e.in, len(enc), true
	}
	return api.Instance{}, 0, false
}

func (d *decoder) instance(in *api.Instance) bool {
	seen, ok := d.fields(func(key []byte) (bit uint, ok bool) {
		switch string(key) {
		case "id":
			bit = 1 << 0
			in.ID, ok = d.str()
		case "address":
			bit = 1 << 1
			in.Address, ok = d.str()
		case "mode":
			var s []byte
			s, ok = d.raw()
			bit, in.Mode = 1<<2, api.Mode(intern(s, string(api.ModeFarm), string(api.ModeMasterStandby)))
		case "state":
			var s []byte
			s, ok = d.raw()
			bit, in.State = 1<<3, api.State(intern(s, string(api.StateReady), string(api.StateStarting), string(api.StateDraining)))
		case "weight":
			bit = 1 << 4
			in.Weight, ok = d.int()
		case "priority":
			bit = 1 << 5
			in.Priority, ok = d.int()
		case "zone":
			bit = 1 << 6
			in.Zone, ok = d.str()
		case "meta":
			bit, ok = 1<<7, d.meta(&in.Meta)
		case "session_tag":
			bit = 1 << 8
			in.SessionTag, ok = d.str()
		case "registered_at":
			bit, ok = 1<<9, d.time(&in.RegisteredAt)
		}
		return bit, ok
	})
	if seen&(1<<4) == 0 {
		in.Weight = api.DefaultWeight
	}
	return ok
}

// meta reads an object of strings. As in encoding/json, a key given twice
// keeps its last value.
func (d *decoder) meta(m *map[string]string) bool {
	*m = map[string]string{}
	return d.object(func(key []byte) bool {
		v, ok := d.str()
		(*m)[string(key)] = v
		return ok
	})
}

func (d *decoder) master(m *api.Master) bool {
	_, ok := d.fields(func(key []byte) (bit uint, ok bool) {
		switch string(key) {
		case "instance":
			bit = 1 << 0
			m.Instance, ok = d.str()
		case "session_tag":
			bit = 1 << 1
			m.SessionTag, ok = d.str()
		case "fencing_token":
			bit = 1 << 2
			m.FencingToken, ok = d.uint()
		case "since":
			bit, ok = 1<<3, d.time(&m.Since)
		case "releasing":
			bit = 1 << 4
			m.Releasing, ok = d.bool()
		}
		return bit, ok
	})
	return ok
}

func (d *decoder) policy(p *api.Policy) bool {
	_, ok := d.fields(func(key []byte) (bit uint, ok bool) {
		if string(key) == "cold_start" {
			bit, ok = 1<<0, d.coldStart(&p.ColdStart)
		}
		return bit, ok
	})
	return ok
}

func (d *decoder) coldStart(c *api.ColdStart) bool {
	_, ok := d.fields(func(key []byte) (bit uint, ok bool) {
		switch string(key) {
		case "min_ready":
			bit = 1 << 0
			c.MinReady, ok = d.int()
		case "settle_ms":
			bit = 1 << 1
			c.SettleMs, ok = d.int64()
		}
		return bit, ok
	})
	return ok
}
