package cluster

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/logger"
)

// Dragonboat's capnslog takes over the standard library's logger in its
// init (its log_hijack.go: log.SetOutput into capnslog, flags 0). This
// package's init runs after it and puts Go's defaults back, so neither the
// binary nor a program that starts servers in-process (servertest, sdktest)
// finds its log output changed.
func init() {
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags)
	log.SetPrefix("")
}

// Dragonboat's logger factory can be set once per process (a second call
// panics), before the first NodeHost. The first Node installs a factory that
// routes every Dragonboat package into the current slog logger; later Nodes
// in the same process (tests, `rafting dev`) share it.
var (
	loggerOnce sync.Once
	dbLogger   atomic.Pointer[slog.Logger]
	dbVerbose  atomic.Int32 // dbLevels: how much of Dragonboat's logs go through
)

// How much of Dragonboat's logs go to the logger, by its level (the
// server's --log-level): at debug, everything Dragonboat says; at info
// and warn, its warnings and errors, but only errors from its chattiest
// packages (elections, reconnects; our own INFO lines tell of leadership
// changes); at error, its errors.
const (
	dbDefault int32 = iota
	dbEverything
	dbErrorsOnly
)

// setLogger routes Dragonboat's logs into l, as much of them as l's level
// asks for.
func setLogger(l *slog.Logger) {
	if dbLogger.Load() == nil || l.Enabled(context.Background(), slog.LevelWarn) {
		dbLogger.Store(l)
		switch ctx := context.Background(); {
		case l.Enabled(ctx, slog.LevelDebug):
			dbVerbose.Store(dbEverything)
		case !l.Enabled(ctx, slog.LevelWarn):
			dbVerbose.Store(dbErrorsOnly)
		default:
			dbVerbose.Store(dbDefault)
		}
	}
	loggerOnce.Do(func() {
		logger.SetLoggerFactory(func(pkg string) logger.ILogger {
			lvl := logger.WARNING
			if pkg == "raft" || pkg == "rsm" || pkg == "transport" || pkg == "logdb" || pkg == "config" {
				// elections and reconnects log at warning: very chatty;
				// config warns that peer TLS is off, which Validate
				// already refuses off loopback without --insecure
				lvl = logger.ERROR
			}
			return &slogAdapter{pkg: pkg, level: lvl}
		})
	})
}

// slogAdapter is a Dragonboat ILogger writing to slog (warn by default).
type slogAdapter struct {
	pkg   string
	level logger.LogLevel
}

func (a *slogAdapter) SetLevel(l logger.LogLevel) { a.level = l }

func (a *slogAdapter) log(l logger.LogLevel, sl slog.Level, format string, args []any) {
	limit := a.level
	switch dbVerbose.Load() {
	case dbEverything:
		limit = logger.DEBUG
	case dbErrorsOnly:
		limit = min(limit, logger.ERROR)
	}
	if l > limit {
		return
	}
	lg := dbLogger.Load()
	if lg == nil || !lg.Enabled(context.Background(), sl) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if a.pkg == "transport" && l <= logger.ERROR {
		if target, ok := unreachable(msg); ok {
			// A peer that restarts, stops or is cut off: the transport
			// says so at ERROR on every failed send and dial, 4–10 lines
			// per peer for a planned restart. Once per peer a minute at
			// WARN, the rest at DEBUG; rafting_peer_reachable tells
			// whether it lasts.
			sl = slog.LevelDebug
			if peerNoise.first(target, time.Now()) {
				sl, msg = slog.LevelWarn, "raft transport: cannot reach a peer (restarting, stopped or cut off); retrying: "+msg
			}
			if !lg.Enabled(context.Background(), sl) {
				return
			}
		}
	}
	lg.Log(context.Background(), sl, msg, "pkg", a.pkg)
}

// unreachable reports whether a transport message says a peer could not
// be reached, and names the peer's address.
func unreachable(msg string) (string, bool) {
	m := unreachableMsg.FindStringSubmatch(msg)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var unreachableMsg = regexp.MustCompile(`^(?:send batch failed, (?:target|taret node) |Nodehost \S+ failed to get a connection to )([^ ,()]+).*(?:connection refused|connection reset|broken pipe|EOF|i/o timeout|no route to host|use of closed network connection)`)

// peerNoise remembers when each peer's unreachability was last logged.
var peerNoise = noise{last: map[string]time.Time{}}

type noise struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// first reports whether nothing was logged of target in the last minute,
// and records now if so.
func (n *noise) first(target string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.last[target]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if len(n.last) > 1024 {
		clear(n.last)
	}
	n.last[target] = now
	return true
}

func (a *slogAdapter) Debugf(format string, args ...any) {
	a.log(logger.DEBUG, slog.LevelDebug, format, args)
}
func (a *slogAdapter) Infof(format string, args ...any) {
	a.log(logger.INFO, slog.LevelInfo, format, args)
}
func (a *slogAdapter) Warningf(format string, args ...any) {
	a.log(logger.WARNING, slog.LevelWarn, format, args)
}
func (a *slogAdapter) Errorf(format string, args ...any) {
	a.log(logger.ERROR, slog.LevelError, format, args)
}

// Panicf must panic: Dragonboat assumes it does not return.
func (a *slogAdapter) Panicf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if lg := dbLogger.Load(); lg != nil {
		lg.Error(msg, "pkg", a.pkg)
	}
	onPanic(msg)
	panic(msg)
}
