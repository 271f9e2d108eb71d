package chaos

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"
)

// echo is a TCP server that answers every line with itself.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, rd *bufio.Reader, timeout time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	line, err := rd.ReadString('\n')
	if err != nil {
		return 0, false
	}
	if line != "ping\n" {
		t.Fatalf("echo = %q, want ping", line)
	}
	return time.Since(start), true
}

// dial connects to addr, and closes the connection when t ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxyRules(t *testing.T) {
	p, err := NewProxy(echo(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	rd := bufio.NewReader(c)
	if _, ok := roundTrip(t, c, rd, time.Second); !ok {
		t.Fatal("no answer through a healthy proxy")
	}
	p.Set(Rule{Delay: 100 * time.Millisecond}, Rule{})
	if d, ok := roundTrip(t, c, rd, time.Second); !ok || d < 100*time.Millisecond {
		t.Fatalf("round trip with 100ms delay up = %v, %v", d, ok)
	}
	p.Set(Rule{}, Rule{Cut: true}) // answers held
	if _, ok := roundTrip(t, c, rd, 200*time.Millisecond); ok {
		t.Fatal("an answer crossed a cut")
	}
	p.Heal() // the held answer arrives: a cut holds, it does not lose
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if line, err := rd.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after healing: %q, %v; want the held ping", line, err)
	}
}

// raftFrame is a Dragonboat frame of a message batch from node.
func raftFrame(node int, payload string) []byte {
	var body []byte
	body = append(body, 0x0a) // field 1, a message: opaque here
	body = binary.AppendUvarint(body, uint64(len(payload)))
	body = append(body, payload...)
	body = append(body, 0x10, 1) // deployment ID
	src := []byte("00000000-0000-4000-8000-" + "00000000000" + string(rune('0'+node)))
	body = append(body, 0x1a)
	body = binary.AppendUvarint(body, uint64(len(src)))
	body = append(body, src...)
	body = append(body, 0x20, 210) // bin version
	head := make([]byte, raftHeaderSize)
	binary.BigEndian.PutUint16(head, raftBatch)
	binary.BigEndian.PutUint64(head[2:], uint64(len(body)))
	binary.BigEndian.PutUint32(head[14:], crc32.ChecksumIEEE(body))
	binary.BigEndian.PutUint32(head[10:], crc32.ChecksumIEEE(head))
	return append(append(raftMagic[:], head...), body...)
}

func TestRaftProxyDropsMessagesByLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan frame, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		rd := bufio.NewReader(c)
		for {
			f, err := readFrame(rd)
			if err != nil {
				return
			}
			got <- f
		}
	}()
	p, err := NewRaftProxy(ln.Addr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	next := func() (string, bool) {
		select {
		case f := <-got:
			body := f.b[2+raftHeaderSize:]
			l, n := binary.Uvarint(body[1:])
			return string(body[1+n : 1+n+int(l)]), true
		case <-time.After(300 * time.Millisecond):
			return "", false
		}
	}
	send := func(payload string) {
		if _, err := c.Write(raftFrame(2, payload)); err != nil {
			t.Fatal(err)
		}
	}
	send("one")
	if m, ok := next(); !ok || m != "one" {
		t.Fatalf("first message = %q, %v", m, ok)
	}
	p.SetFrom(3, Rule{Cut: true}) // another link: no effect
	send("two")
	if m, ok := next(); !ok || m != "two" {
		t.Fatalf("message with another link cut = %q, %v", m, ok)
	}
	p.SetFrom(2, Rule{Cut: true})
	send("lost")
	if m, ok := next(); ok {
		t.Fatalf("a message crossed a cut link: %q", m)
	}
	p.Heal()
	send("three") // the lost one stays lost: the stream goes on
	if m, ok := next(); !ok || m != "three" {
		t.Fatalf("after healing = %q, %v; want three", m, ok)
	}
}

func TestNodeOf(t *testing.T) {
	tests := []struct {
		id   string
		want int
	}{
		{"00000000-0000-4000-8000-00000000000a", 10},
		{"00000000-0000-4000-8000-000000000001", 1},
		{"127.0.0.1:7071", 0},
	}
	for _, tt := range tests {
		if got := nodeOf(tt.id); got != tt.want {
			t.Errorf("nodeOf(%q) = %d, want %d", tt.id, got, tt.want)
		}
	}
}
