package peers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one child process a Target started. It is ended by its PID,
// never by name.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu    sync.Mutex
	lines []string
	subs  []chan string
}

// StartProcess starts bin with args and env (added to os.Environ()); its
// stderr goes to logDir/<name>.log and its stdout lines are kept and
// delivered to subscribers.
func StartProcess(name, logDir, bin string, env []string, args ...string) (*Process, error) {
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer log.Close()
		var buf [4096]byte
		var pending []byte
		for {
			n, err := out.Read(buf[:])
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				p.line(string(pending[:i]))
				pending = pending[i+1:]
			}
			if err != nil {
				break
			}
		}
		p.err = p.cmd.Wait()
		p.mu.Lock()
		for _, s := range p.subs {
			close(s)
		}
		p.subs = nil
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *Process) line(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, l)
	for _, s := range p.subs {
		select {
		case s <- l:
		default: // a subscriber that does not keep up loses lines, never blocks the pipe
		}
	}
}

// PID is the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Lines returns the stdout lines so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Subscribe returns a channel of the stdout lines from now on, closed when
// the process exits.
func (p *Process) Subscribe() <-chan string {
	c := make(chan string, 1024)
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		close(c)
	default:
		p.subs = append(p.subs, c)
	}
	return c
}

// Signal sends sig to the process (by PID).
func (p *Process) Signal(sig syscall.Signal) { _ = syscall.Kill(p.PID(), sig) }

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to timeout, then kills; it reports whether
// the process ended on its own.
func (p *Process) Stop(timeout time.Duration) bool {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.done }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitTCP waits until addr accepts a TCP connection.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// everywhere Go runs).
const clockTicks = 100

// cpuTicks returns utime+stime of pid and its resident set in bytes.
func cpuTicks(pid int) (ticks int64, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After ')': state(0) ... utime(11) stime(12) ... rss(21) in pages.
	if len(f) < 22 {
		return 0, 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return ut + st, pages * int64(os.Getpagesize()), nil
}

// Usage measures pids over d: CPU as % of one core (all together) and
// their summed resident memory at the end.
func Usage(pids []int, d time.Duration) (cpuPct float64, rss int64, err error) {
	sum := func() (int64, int64, error) {
		var t, r int64
		for _, pid := range pids {
			ti, ri, err := cpuTicks(pid)
			if err != nil {
				return 0, 0, err
			}
			t, r = t+ti, r+ri
		}
		return t, r, nil
	}
	t0, _, err := sum()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	time.Sleep(d)
	t1, r1, err := sum()
	if err != nil {
		return 0, 0, err
	}
	secs := float64(t1-t0) / clockTicks
	return 100 * secs / time.Since(start).Seconds(), r1, nil
}
