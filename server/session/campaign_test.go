package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// TestSimCampaign drives the fault-injecting sim with random faults
// (stalled commits that commit later, lost and refused proposals, slow and
// failing ReadIndex, leader moves, no leader, re-election of the same node,
// stalls that end with a leader change) while three master-standby members
// keep alive (with pauses and client closes), a farm member keeps alive
// without a lease (the no-round shortcut), and an operator resigns or
// drains and un-drains the master without its session. It checks the
// promise rule on the virtual clock:
//
//   - no session ends before the latest promise any answer gave it
//     (send time + lease_ms), and no answer promises past an end already
//     applied;
//   - a session whose stream the client never closed does not end before
//     its last answered keepalive's send + TTL;
//   - a mastership does not move on (release, expiry) before the latest
//     promise of an answer that listed it, not releasing, ran out.
//
// It passes on the current code (about 12,000 seeds tried). Its limits:
// the sim's Leader() is the global truth (no node with a stale view),
// every appended entry commits eventually (no truncation), and every
// replica applies at commit.
//
// CAMPAIGN_SEEDS sets the number of seeds (default 20); CAMPAIGN_LOG=1 logs
// every seed's schedule.
func TestSimCampaign(t *testing.T) {
	seeds := 20
	if s := os.Getenv("CAMPAIGN_SEEDS"); s != "" {
		seeds, _ = strconv.Atoi(s)
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runCampaign(t, uint64(seed)) })
		})
	}
}

type campSession struct {
	id           string
	ttl, lease   time.Duration
	promise      time.Time            // latest send + lease of an answered keepalive
	clean        map[uint64]time.Time // per token: the same, of answers that list that mastership, not releasing
	lastSent     time.Time            // send of the latest answered keepalive
	clientClosed bool
	ended        time.Time
}

type campaign struct {
	t   *testing.T
	c   *simCluster
	mu  sync.Mutex
	all map[string]*campSession
	log []string

	answered int
}

func (k *campaign) logf(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, fmt.Sprintf("%8.3f ", float64(time.Now().UnixNano()%1e12)/1e9)+fmt.Sprintf(format, args...))
}

func (k *campaign) failf(format string, args ...any) {
	k.mu.Lock()
	tail := k.log
	if len(tail) > 120 {
		tail = tail[len(tail)-120:]
	}
	k.mu.Unlock()
	for _, l := range tail {
		k.t.Log(l)
	}
	k.t.Errorf(format, args...)
}

func (c *simCluster) leaderIndex() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

func runCampaign(t *testing.T, seed uint64) {
	c := newSim(t, 3, Config{SelfPreservationMin: 100})
	k := &campaign{t: t, c: c, all: map[string]*campSession{}}
	start := time.Now()
	end := start.Add(40 * time.Second)
	var wg sync.WaitGroup

	// The checker: every applied batch, sessions that ended are checked
	// against the promises given.
	stopCheck := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		sm := c.nodes[0].sm
		var last *api.Master
		for {
			_, ch := sm.WaitApplied()
			now := time.Now()
			cur := sm.Service("db").Master
			if last != nil && (cur == nil || cur.FencingToken != last.FencingToken) {
				// The mastership moved on (released, resigned or expired): the
				// holder's clean promises must have run out.
				k.mu.Lock()
				var holder *campSession
				for _, s := range k.all {
					if api.SessionTag(s.id) == last.SessionTag {
						holder = s
					}
				}
				var clean time.Time
				if holder != nil {
					clean = holder.clean[last.FencingToken]
				}
				k.mu.Unlock()
				k.logf("master %s(%d) -> %v", last.Instance, last.FencingToken, cur)
				if clean.After(now) {
					k.failf("seed %d: the mastership of %s (token %d) moved on at %v, %v before the holder's clean promise ran out", seed, last.Instance, last.FencingToken, now, clean.Sub(now))
				}
			}
			if cur != nil && last != nil && cur.FencingToken == last.FencingToken && cur.Releasing != last.Releasing {
				k.logf("master %s(%d) releasing=%v (applied %d)", cur.Instance, cur.FencingToken, cur.Releasing, sm.Applied())
			}
			last = cur
			k.mu.Lock()
			var ended []campSession // copies, read under k.mu
			for _, s := range k.all {
				if !s.ended.IsZero() {
					continue
				}
				if _, st := sm.Session(s.id); st == fsm.SessionEnded {
					s.ended = now
					ended = append(ended, *s)
				}
			}
			k.mu.Unlock()
			for _, s := range ended {
				k.logf("session %s ended (promise %v, last sent %v, client closed %v)", s.id, s.promise.Sub(start), s.lastSent.Sub(start), s.clientClosed)
				if s.promise.After(now) {
					k.failf("seed %d: session %s ended at %v, %v before the promise it was given ran out", seed, s.id, now.Sub(start), s.promise.Sub(now))
				}
				if !s.clientClosed && !s.lastSent.IsZero() && s.lastSent.Add(s.ttl).After(now) {
					k.failf("seed %d: session %s ended at %v, %v before its TTL since its last answered keepalive ran out", seed, s.id, now.Sub(start), s.lastSent.Add(s.ttl).Sub(now))
				}
			}
			select {
			case <-ch:
			case <-stopCheck:
				return
			}
		}
	}()

	// Faults.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 99))
		for time.Now().Before(end.Add(-5 * time.Second)) {
			time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond)
			d := time.Duration(100+rng.IntN(2400)) * time.Millisecond
			switch rng.IntN(9) {
			case 0:
				k.logf("fault: stall %v", d)
				c.setStall(true)
				time.Sleep(d)
				c.setStall(false)
			case 1:
				k.logf("fault: lose %v", d)
				c.set(func(c *simCluster) { c.lose = true })
				time.Sleep(d)
				c.set(func(c *simCluster) { c.lose = false })
			case 2:
				k.logf("fault: refuse %v", d)
				c.set(func(c *simCluster) { c.refuse = true })
				time.Sleep(d)
				c.set(func(c *simCluster) { c.refuse = false })
			case 3:
				k.logf("fault: slow reads %v", d)
				c.set(func(c *simCluster) { c.readDelay = 200 * time.Millisecond })
				time.Sleep(d)
				c.set(func(c *simCluster) { c.readDelay = 0 })
			case 4:
				k.logf("fault: failing reads %v", d)
				c.set(func(c *simCluster) { c.readErr = &api.Error{Code: api.CodeUnavailable, Message: "sim: no quorum"} })
				time.Sleep(d)
				c.set(func(c *simCluster) { c.readErr = nil })
			case 5, 6:
				i := rng.IntN(3)
				k.logf("fault: elect %d", i)
				c.elect(i)
			case 7:
				k.logf("fault: no leader %v", d/2)
				c.set(func(c *simCluster) { c.leader = -1 })
				for _, nd := range c.nodes {
					nd.m.LeaderChanged()
				}
				time.Sleep(d / 2)
				c.elect(rng.IntN(3))
			case 8:
				// a stall that ends with a leader change: the stalled entries
				// commit in the next term, before its barrier
				i := rng.IntN(3)
				k.logf("fault: stall %v then elect %d", d, i)
				c.setStall(true)
				time.Sleep(d)
				c.elect(i)
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				c.setStall(false)
			}
		}
		c.setStall(false)
		c.set(func(c *simCluster) { c.lose, c.refuse, c.readDelay, c.readErr = false, false, 0, nil })
		if c.leaderIndex() < 0 {
			c.elect(0)
		}
	}()

	// An operator: resigns the master without its session, or drains it
	// and later makes it ready again.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 5))
		for time.Now().Before(end.Add(-3 * time.Second)) {
			time.Sleep(time.Duration(500+rng.IntN(3000)) * time.Millisecond)
			m := c.nodes[rng.IntN(3)].sm.Service("db").Master
			if m == nil || m.Releasing {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if rng.IntN(2) == 0 {
				k.logf("operator: resign %s (%d)", m.Instance, m.FencingToken)
				c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpResign, fsm.Resign{Service: "db", Instance: m.Instance, Token: m.FencingToken}))
			} else {
				k.logf("operator: drain %s", m.Instance)
				c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpRegister, fsm.Register{Service: "db", ID: m.Instance,
					Instance: api.RegisterRequest{Address: m.Instance, Mode: api.ModeMasterStandby, State: api.StateDraining}}))
				cancel()
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
				ctx, cancel = context.WithTimeout(context.Background(), time.Second)
				k.logf("operator: undrain %s", m.Instance)
				c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpRegister, fsm.Register{Service: "db", ID: m.Instance,
					Instance: api.RegisterRequest{Address: m.Instance, Mode: api.ModeMasterStandby}}))
			}
			cancel()
		}
	}()

	for i, id := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.member(seed*10+uint64(i), id, end)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.farm(seed*10+9, "f", end)
	}()
	time.Sleep(end.Sub(time.Now()) + 2*time.Second)
	close(stopCheck)
	wg.Wait()
	ended := 0
	for _, s := range k.all {
		if !s.ended.IsZero() {
			ended++
		}
	}
	if os.Getenv("CAMPAIGN_LOG") != "" {
		for _, l := range k.log {
			t.Log(l)
		}
	}
	t.Logf("seed %d: %d keepalives answered, %d sessions, %d ended, %d log lines", seed, k.answered, len(k.all), ended, len(k.log))
}

// member runs one master-standby instance: a session, its stream on the
// leader, keepalives every 250 ms, pauses, and a new session when the old
// one ended.
func (k *campaign) member(seed uint64, inst string, end time.Time) {
	c := k.c
	rng := rand.New(rand.NewPCG(seed, 7))
	var (
		cur       *campSession
		n         int
		stream    *Stream
		streamOf  *Manager
		ttl       = 3 * time.Second
		lease     = time.Second
		registerd bool
	)
	dropStream := func(mark bool) {
		if stream != nil {
			if cur != nil && mark {
				k.mu.Lock()
				cur.clientClosed = true
				k.mu.Unlock()
			}
			stream.ClientClosed()
		}
		stream, streamOf = nil, nil
	}
	defer dropStream(true)
	for time.Now().Before(end) {
		if cur == nil {
			n++
			id := fmt.Sprintf("s%s-%03d-000000000000", inst, n)
			cur = &campSession{id: id, ttl: ttl, lease: lease}
			k.mu.Lock()
			k.all[id] = cur
			k.mu.Unlock()
			registerd = false
			stream, streamOf = nil, nil
		}
		if !registerd {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			o, err := c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpOpenSession, fsm.OpenSession{ID: cur.id, TTLMs: ttl.Milliseconds(), LeaseMs: lease.Milliseconds()}))
			if err == nil && o.Code == "" {
				o, err = c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpRegister, fsm.Register{Service: "db", ID: inst,
					Instance: api.RegisterRequest{Address: inst, Mode: api.ModeMasterStandby, Session: cur.id}}))
			}
			cancel()
			switch {
			case err == nil && o.Code == "":
				registerd = true
			case err == nil && o.Code == api.CodeSessionExpired:
				cur = nil
				continue
			}
			if !registerd {
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		if rng.IntN(40) == 0 {
			d := time.Duration(300+rng.IntN(4000)) * time.Millisecond
			if rng.IntN(3) == 0 {
				k.mu.Lock()
				cur.clientClosed = true
				k.mu.Unlock()
				k.logf("%s: crash-like pause %v (stream closed by the client)", cur.id, d)
				dropStream(true)
			} else {
				k.logf("%s: pause %v", cur.id, d)
			}
			time.Sleep(d)
		}
		li := c.leaderIndex()
		if li < 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		mgr := c.nodes[li].m
		if stream != nil {
			select {
			case _, ok := <-stream.Events():
				if !ok {
					stream, streamOf = nil, nil
				}
			default:
			}
		}
		if stream != nil && streamOf != mgr {
			dropStream(false) // a stream on a node that no longer leads
		}
		if stream == nil {
			s, err := mgr.Attach(cur.id)
			var ae *api.Error
			switch {
			case err == nil:
				stream, streamOf = s, mgr
			case errors.As(err, &ae) && (ae.Code == api.CodeSessionExpired || ae.Code == api.CodeNotFound):
				k.logf("%s: attach: %v", cur.id, err)
				cur = nil
				continue
			default:
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		resp, err := mgr.Keepalive(ctx, cur.id)
		cancel()
		var ae *api.Error
		switch {
		case err == nil:
			p := sent.Add(ms(resp.LeaseMs))
			k.mu.Lock()
			k.answered++
			if p.After(cur.promise) {
				cur.promise = p
			}
			for _, h := range resp.Masters {
				if h.Service == "db" && !h.Releasing && p.After(cur.clean[h.FencingToken]) {
					if cur.clean == nil {
						cur.clean = map[uint64]time.Time{}
					}
					cur.clean[h.FencingToken] = p
				}
			}
			if os.Getenv("CAMPAIGN_LOG") != "" {
				k.log = append(k.log, fmt.Sprintf("%8.3f %s: answer sent %v index %d masters %+v", float64(time.Now().UnixNano()%1e12)/1e9, cur.id, sent.Format("05.000"), resp.Index, resp.Masters))
			}
			cur.lastSent = sent
			ended := cur.ended
			k.mu.Unlock()
			if !ended.IsZero() && p.After(ended) {
				k.failf("%s: a keepalive sent at %v was promised until %v, after the session ended at %v", cur.id, sent, p, ended)
			}
		case errors.As(err, &ae) && (ae.Code == api.CodeSessionExpired || ae.Code == api.CodeNotFound):
			k.logf("%s: keepalive: %v", cur.id, err)
			cur = nil
			continue
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// farm runs one farm instance: a session without a lease, plain keepalives
// every TTL/3 (no stream), pauses, and a new session when the old one ended.
func (k *campaign) farm(seed uint64, inst string, end time.Time) {
	c := k.c
	rng := rand.New(rand.NewPCG(seed, 3))
	ttl := 3 * time.Second
	var cur *campSession
	n := 0
	registered := false
	for time.Now().Before(end) {
		if cur == nil {
			n++
			cur = &campSession{id: fmt.Sprintf("s%s-%03d-000000000000", inst, n), ttl: ttl}
			k.mu.Lock()
			k.all[cur.id] = cur
			k.mu.Unlock()
			registered = false
		}
		if !registered {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			o, err := c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpOpenSession, fsm.OpenSession{ID: cur.id, TTLMs: ttl.Milliseconds()}))
			if err == nil && o.Code == "" {
				o, err = c.nodes[rng.IntN(3)].Propose(ctx, fsm.Encode(fsm.OpRegister, fsm.Register{Service: "web", ID: inst,
					Instance: api.RegisterRequest{Address: inst, Session: cur.id}}))
			}
			cancel()
			switch {
			case err == nil && o.Code == "":
				registered = true
			case err == nil && o.Code == api.CodeSessionExpired:
				cur = nil
				continue
			default:
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		if rng.IntN(15) == 0 {
			d := time.Duration(300+rng.IntN(3500)) * time.Millisecond
			k.logf("%s: pause %v", cur.id, d)
			time.Sleep(d)
		}
		li := c.leaderIndex()
		if li < 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := c.nodes[li].m.Keepalive(ctx, cur.id)
		cancel()
		var ae *api.Error
		switch {
		case err == nil:
			k.mu.Lock()
			cur.lastSent = sent
			k.mu.Unlock()
		case errors.As(err, &ae) && (ae.Code == api.CodeSessionExpired || ae.Code == api.CodeNotFound):
			k.logf("%s: keepalive: %v", cur.id, err)
			cur = nil
			continue
		default:
			time.Sleep(50 * time.Millisecond)
			continue
		}
		time.Sleep(ttl / 3)
	}
}
