package cluster

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

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
)

func setLogger(l *slog.Logger) {
	if dbLogger.Load() == nil || l.Enabled(context.Background(), slog.LevelWarn) {
		dbLogger.Store(l)
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
	if l > a.level {
		return
	}
	lg := dbLogger.Load()
	if lg == nil || !lg.Enabled(context.Background(), sl) {
		return
	}
	lg.Log(context.Background(), sl, fmt.Sprintf(format, args...), "pkg", a.pkg)
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
	panic(msg)
}
