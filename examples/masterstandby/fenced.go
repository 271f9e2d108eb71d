package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// errFenced is a write refused because a higher fencing token was seen.
var errFenced = errors.New("fenced: a newer master has written")

// fencedFile is the resource the master guards: an append-only ledger that
// rejects a write whose fencing token is lower than the highest it has
// accepted. Processes share it through the file system; an exclusive
// flock makes check-and-append atomic across them.
type fencedFile struct {
	path string // the ledger; path+".token" holds the highest token
}

// write appends line under token, or returns errFenced.
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
	if token < highest {
		return fmt.Errorf("%w (token %d < %d)", errFenced, token, highest)
	}
	if token > highest {
		if err := os.WriteFile(f.path+".token", []byte(strconv.FormatUint(token, 10)), 0o600); err != nil {
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
