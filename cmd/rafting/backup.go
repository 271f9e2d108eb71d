package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/spf13/cobra"
)

// restoreTimeout bounds a restore: the new cluster starts every tenant's
// shard and writes its permanent instances before it answers.
const restoreTimeout = 30 * time.Minute

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "backup [-f FILE]",
		Example: `  rafting backup -f rafting-$(date +%F).backup`,
		Short:   "save the cluster's durable state to a file (admin)",
		Long: `Save the cluster's durable state (GET /v1/backup) to a file, mode 0600 (it holds the tenants'
token hashes), written whole or not at all; without -f, to stdout. Progress goes to stderr.`,
		Args: nArgs(0, 0, "[-f FILE]"),
	}
	var cf commonFlags
	cf.register(a, cmd.Flags(), "RAFTING_ADMIN_TOKEN")
	file := cmd.Flags().StringP("file", "f", "", "file to write (default stdout)")
	cmd.RunE = a.action(func(ctx context.Context, _ []string) error { return a.backup(ctx, &cf, *file) })
	return cmd
}

// backupProgress is how often backup says on stderr that it still reads.
var backupProgress = 10 * time.Second

// backup saves GET /v1/backup to a file (mode 0600: it holds the
// tenants' token hashes), written whole or not at all, or to stdout.
func (a *app) backup(ctx context.Context, cf *commonFlags, file string) error {
	stdout, stderr := a.stdout, a.stderr
	c, err := cf.client()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "backup: reading the cluster's state from %s\n", printable(strings.Join(c.Servers, ",")))
	start := time.Now()
	stop := ticking(stderr, "backup", "reading", backupProgress)
	var raw json.RawMessage
	err = c.Do(ctx, http.MethodGet, "/v1/backup", nil, &raw)
	stop.Stop()
	if err != nil {
		fmt.Fprintf(stderr, "backup: failed after %s\n", time.Since(start).Round(time.Millisecond))
		return err
	}
	fmt.Fprintf(stderr, "backup: %d bytes read in %s\n", len(raw), time.Since(start).Round(time.Millisecond))
	var b api.Backup
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("backup: the server's answer: %w", err)
	}
	raw = append(raw, '\n')
	if file == "" {
		_, err := stdout.Write(raw)
		return err
	}
	if err := writeFileAtomic(file, raw); err != nil {
		return err
	}
	instances := 0
	for _, t := range b.Tenants {
		for _, s := range t.Services {
			instances += len(s.Instances)
		}
	}
	if a.json() {
		return printJSON(stdout, backupResult{File: file, Tenants: len(b.Tenants), Instances: instances, Index: b.Index})
	}
	_, err = fmt.Fprintf(stdout, "backup of %d tenants and %d permanent instances (meta index %d) written to %s\n",
		len(b.Tenants), instances, b.Index, file)
	return err
}

// backupResult is backup -f's JSON output.
type backupResult struct {
	File      string `json:"file"`
	Tenants   int    `json:"tenants"`
	Instances int    `json:"instances"` // permanent instances
	Index     uint64 `json:"index"`     // the meta shard's index the backup was taken at
}

// writeFileAtomic writes b to a temporary file beside path, syncs it and
// renames it over path.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".rafting-backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// restoreProgress is how often restore says on stderr that it still waits.
var restoreProgress = 10 * time.Second

// restore sends a backup file to POST /v1/restore. The server answers
// when it has written everything (up to restoreTimeout): meanwhile a line
// on stderr every restoreProgress says it waits, and for how long.
func (a *app) restoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "restore -f FILE",
		Example: `  rafting restore -f rafting-2026-11-26.backup   # into a new cluster started with --await-restore`,
		Short:   "restore a backup into a new cluster (admin)",
		Long: `Restore a backup file (POST /v1/restore) into a new cluster, one started with --await-restore.
The server answers when it has written everything (up to 30 minutes): meanwhile stderr says
that it waits, and for how long.`,
		Args: nArgs(0, 0, "-f FILE"),
	}
	var cf commonFlags
	cf.register(a, cmd.Flags(), "RAFTING_ADMIN_TOKEN")
	fs := cmd.Flags()
	file := fs.StringP("file", "f", "", "backup file to restore (required)")
	gap := fs.Int("epoch-gap", -1, "incarnations of each tenant name to skip, so fencing tokens stay above those of the cluster the backup came from (-1: the server's default, 16)")
	force := fs.Bool("force", false, "write the backup's state over tenants whose state moved on since (a restore sent again is otherwise refused for them)")
	cmd.RunE = a.action(func(ctx context.Context, _ []string) error { return a.restore(ctx, &cf, *file, *gap, *force) })
	return cmd
}

func (a *app) restore(ctx context.Context, cf *commonFlags, file string, gap int, force bool) error {
	stdout, stderr := a.stdout, a.stderr
	if file == "" {
		return usageError{"restore: -f names the backup file"}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !json.Valid(raw) {
		return fmt.Errorf("restore: %s is not JSON", file)
	}
	hc := *c.HTTP
	hc.Timeout = restoreTimeout
	c.HTTP = &hc
	var res api.RestoreResponse
	q := url.Values{}
	if gap >= 0 {
		q.Set("epoch_gap", strconv.Itoa(gap))
	}
	if force {
		q.Set("force", "true")
	}
	path := "/v1/restore"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var b api.Backup
	_ = json.Unmarshal(raw, &b) // for the count only: the server checks the backup
	fmt.Fprintf(stderr, "restore: sending %s (%d tenants, %d bytes) to %s; the answer comes when the cluster has written it all (at most %s)\n",
		printable(file), len(b.Tenants), len(raw), printable(strings.Join(c.Servers, ",")), restoreTimeout)
	start := time.Now()
	stop := ticking(stderr, "restore", "writing", restoreProgress)
	err = c.Do(ctx, http.MethodPost, path, json.RawMessage(raw), &res)
	stop.Stop()
	if err != nil {
		fmt.Fprintf(stderr, "restore: failed after %s\n", time.Since(start).Round(time.Millisecond))
		return err
	}
	fmt.Fprintf(stderr, "restore: done in %s\n", time.Since(start).Round(time.Millisecond))
	if a.json() {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "restored %d tenants, %d policies, %d permanent instances and %d keys", res.Tenants, res.Policies, res.Instances, res.Keys)
	if res.Unchanged > 0 {
		fmt.Fprintf(stdout, " (%d tenants already held the backup's state: left alone)", res.Unchanged)
	}
	fmt.Fprintln(stdout)
	return nil
}
