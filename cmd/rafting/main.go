// Command rafting is Rafting's one binary: `rafting server` runs a server,
// `rafting dev` a 3-node cluster in one process for local work, and the
// admin subcommands talk to the REST API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rafting/rafting/server/config"
)

const usage = `usage: rafting <command> [flags]

commands:
  server     run one Rafting server (one Raft node)
  dev        run a 3-node cluster in this process on 127.0.0.1:7070/7170/7270
  tenant     create|list|show|update|rotate-token|revoke-previous|delete tenants (admin)
  service    list|show a tenant's services
  kv         get|put|delete|watch|txn a tenant's configuration keys
  cluster    nodes (health, build, lag, leaderships) and shards; remove ID; transfer-leader (admin)
  backup     save the cluster's durable state to a file (admin)
  restore    restore a backup into a new cluster (admin)
  version    this binary's version, commit and Go version
  completion bash|zsh|fish: a shell completion script (source it)

Run 'rafting <command> -h' for a command's flags; -o json prints any result as JSON.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		// An error can quote the server (an error answer's message):
		// printed escaped, as every value from the server is.
		msg := printable(err.Error(), '\n', '\t', '\\')
		var ue usageError
		if errors.As(err, &ue) || errors.As(err, new(helpError)) {
			fmt.Fprintln(os.Stderr, "rafting:", msg)
			os.Exit(2)
		}
		var ee *exitError
		if errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "rafting:", msg)
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "rafting:", msg)
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// helpError is -h or --help: its text goes to stdout and the command exits 0.
type helpError struct{ text string }

func (e helpError) Error() string { return "help requested" }

// parseFlags parses args into fs. -h or --help is a helpError with the
// flags' usage; any other error a usageError with the error and the usage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var out strings.Builder
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(nil)
	if errors.Is(err, flag.ErrHelp) {
		return helpError{out.String()}
	}
	if err != nil {
		return usageError{strings.TrimRight(out.String(), "\n")}
	}
	return nil
}

func run(args []string, stdout, stderr io.Writer) error {
	err := runCommand(args, stdout, stderr)
	var he helpError
	if errors.As(err, &he) {
		_, err = io.WriteString(stdout, he.text)
	}
	return err
}

func runCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"a command is required"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "server":
		return runServer(ctx, args[1:], stderr)
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "tenant", "tenants":
		return runTenant(ctx, args[1:], stdout)
	case "service", "services":
		return runService(ctx, args[1:], stdout)
	case "kv":
		return runKV(ctx, args[1:], os.Stdin, stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout)
	case "backup":
		return runBackup(ctx, args[1:], stdout)
	case "restore":
		return runRestore(ctx, args[1:], stdout, stderr)
	case "version":
		return runVersion(args[1:], stdout)
	case "completion":
		return runCompletion(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

// logger returns a logger on w at the named level, in the named format:
// text (key=value) or json (one object a line).
func logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", format)}
}

// adminToken reads the admin token: --admin-token-file, else
// RAFTING_ADMIN_TOKEN, else "".
// secretFrom reads a secret from a file (the flag that named it) or else
// from an environment variable.
func secretFrom(file, flag, env string) (string, error) {
	if file != "" {
		tok, err := config.ReadSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		return tok, nil
	}
	return strings.TrimSpace(os.Getenv(env)), nil
}

func adminToken(file string) (string, error) {
	return secretFrom(file, "--admin-token-file", "RAFTING_ADMIN_TOKEN")
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs
}
