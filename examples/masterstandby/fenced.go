package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/rafting/rafting/sdk/fence"
)

// errFenced is a write refused because a higher fencing token was seen: a
// refusal is a *fence.StaleTokenError, which matches it with errors.Is.
// (It is fence.ErrStaleToken under the name main.go and the failover tests
// use.)
var errFenced = fence.ErrStaleToken

// fencedFile is the resource the master guards: an append-only ledger that
// applies fence's rule (admit a token at least the highest admitted; refuse
// a lower one, and 0) with fence.Check. Several processes share it, so the
// highest token lives in a file beside it, not in a fence.Guard, and an
// exclusive flock makes read-check-store-append one step across them.
type fencedFile struct {
	path string // the ledger; path+".token" holds the highest token
}

// write appends line under token. It returns an error matching errFenced
// (a *fence.StaleTokenError) for a token lower than the highest admitted,
// and fence.ErrNoToken for 0.
func (f fencedFile) write(token uint64, line string) error {
	lock, err := os.OpenFile(f.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", f.path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	highest, err := f.highest()
	if err != nil {
		return err
	}
	if err := fence.Check(highest, token); err != nil {
		return err
	}
	if token > highest {
		if err := f.store(token); err != nil {
			return err
		}
	}
	ledger, err := os.OpenFile(f.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer ledger.Close()
	_, err = fmt.Fprintf(ledger, "%d %s\n", token, line)
	return err
}

// store replaces the highest token by writing a new file and renaming it
// over the old one, so that a writer killed mid-write never leaves a
// truncated number (a lower token, which would admit a stale master).
func (f fencedFile) store(token uint64) error {
	tmp := f.path + ".token.tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(token, 10)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, f.path+".token")
}

// highest returns the highest token admitted so far (0 for none).
func (f fencedFile) highest() (uint64, error) {
	b, err := os.ReadFile(f.path + ".token")
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
