package main

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rafting/rafting/sdk/fence"
)

func TestFencedFile(t *testing.T) {
	f := fencedFile{path: filepath.Join(t.TempDir(), "ledger")}
	steps := []struct {
		token   uint64
		want    error
		highest uint64
	}{
		{0, fence.ErrNoToken, 0},
		{5, nil, 5},
		{5, nil, 5}, // the same term again
		{4, errFenced, 5},
		{7, nil, 7},
		{5, errFenced, 7},
	}
	for _, s := range steps {
		err := f.write(s.token, "x")
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("write(%d) = %v, want %v", s.token, err, s.want)
		}
		if h, err := f.highest(); err != nil || h != s.highest {
			t.Errorf("after write(%d): highest() = %d, %v, want %d", s.token, h, err, s.highest)
		}
	}
	var stale *fence.StaleTokenError
	if err := f.write(6, "x"); !errors.As(err, &stale) || stale.Token != 6 || stale.Highest != 7 {
		t.Errorf("write(6) = %v, want *fence.StaleTokenError{6, 7}", err)
	}
	// Another handle on the same files (another process) sees the same highest.
	if err := (fencedFile{path: f.path}).write(6, "x"); !errors.Is(err, errFenced) {
		t.Errorf("write(6) through a new handle = %v, want errFenced", err)
	}
	if lines := readLedger(t, f.path); fmt.Sprint(lines) != "[5 5 7]" {
		t.Errorf("ledger tokens %v, want [5 5 7]", lines)
	}
}

// TestFencedFileConcurrent: writers with random tokens near the highest,
// each through its own open of the lock file (as separate processes are):
// the ledger's tokens never decrease.
func TestFencedFileConcurrent(t *testing.T) {
	f := fencedFile{path: filepath.Join(t.TempDir(), "ledger")}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for range 100 {
				h, err := f.highest()
				if err != nil {
					t.Error(err)
					return
				}
				tok := max(3, h+r.Uint64N(5)) - 2
				if err := f.write(tok, "x"); err != nil && !errors.Is(err, errFenced) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	lines := readLedger(t, f.path)
	for i := 1; i < len(lines); i++ {
		if lines[i] < lines[i-1] {
			t.Fatalf("ledger line %d has token %d after %d", i, lines[i], lines[i-1])
		}
	}
	if h, _ := f.highest(); len(lines) == 0 || lines[len(lines)-1] != h {
		t.Errorf("%d lines; highest() = %d", len(lines), h)
	}
}

func readLedger(t *testing.T, path string) []uint64 {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var toks []uint64
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var tok uint64
		if _, err := fmt.Sscan(sc.Text(), &tok); err != nil {
			t.Fatalf("ledger line %q: %v", sc.Text(), err)
		}
		toks = append(toks, tok)
	}
	return toks
}
