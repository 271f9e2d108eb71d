// Command rafting is Rafting's one binary: `rafting server` runs a server,
// `rafting dev` a 3-node cluster in one process for local work, and the
// admin subcommands talk to the REST API.
//
// The commands are spf13/cobra commands (flags: spf13/pflag, so a long
// flag takes two dashes, --servers, and -o, -f, -h are the short ones);
// every request goes through internal/restclient.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rafting/rafting/server/config"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		// An error can quote the server (an error answer's message):
		// printed escaped, as every value from the server is.
		fmt.Fprintln(os.Stderr, "rafting:", printable(err.Error(), '\n', '\t', '\\'))
		os.Exit(exitCode(err))
	}
}

// exitCode is the status the process ends with for err: 2 for a usage
// error, an exitError's own, else 1.
func exitCode(err error) int {
	var ue usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

// usageError is a command line the binary cannot run: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run runs the command line args, reading stdin from os.Stdin, until
// SIGINT or SIGTERM.
func run(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return execute(ctx, args, os.Stdin, stdout, stderr)
}

// runKV runs `rafting kv ARGS`; stdin is where "-" and txn read from.
func runKV(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return execute(ctx, append([]string{"kv"}, args...), stdin, stdout, stderr)
}

// app is one run of the binary: its streams, the root's flags, and
// whether a command's own code began (an error before it is the command
// line's: a usage error).
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	output         string // -o: table or json
	ran            bool
}

// json says whether -o json was asked for.
func (a *app) json() bool { return a.output == "json" }

// execute builds the command tree and runs args on it. Help (-h, --help,
// `rafting help CMD`) goes to stdout and succeeds.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil || a.ran || errors.As(err, new(usageError)) {
		return err
	}
	// Cobra's own: an unknown command, a wrong count of arguments.
	return usageError{err.Error()}
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "rafting",
		Short: "Rafting: service discovery, load balancing and master election for Go services, on Raft",
		Long: `Rafting's one binary: a server, a local dev cluster, and the admin commands, which talk to
the REST API (--servers, default $RAFTING_SERVERS, else 127.0.0.1:7070).

-o json prints any command's result as JSON; progress goes to stderr, results to stdout.
Exit status: 0 done, 1 error, 2 usage (kv: 3 a compare failed, 4 no such key).`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		RunE:              a.group(nil),
		PersistentPreRunE: a.checkOutput,
	}
	root.PersistentFlags().StringVarP(&a.output, "output", "o", "table", "output of a command's result: table or json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Sprintf("%s: %v\n\n%s", c.CommandPath(), err, c.UsageString())}
	})
	root.AddCommand(a.serverCmd(), a.devCmd(), a.tenantCmd(), a.serviceCmd(), a.kvCmd(), a.clusterCmd(),
		a.backupCmd(), a.restoreCmd(), a.versionCmd())
	root.CompletionOptions.DisableDescriptions = false
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  bash:  source <(rafting completion bash)    (or save it in /etc/bash_completion.d/rafting)
  zsh:   source <(rafting completion zsh)     (or save it as _rafting in a directory of $fpath)
  fish:  rafting completion fish | source     (or save it in ~/.config/fish/completions/rafting.fish)`
			c.RunE = a.group(nil) // a shell it does not know is a usage error, not help
		}
	}
	return root
}

// checkOutput refuses an -o other than table or json before a command runs.
func (a *app) checkOutput(*cobra.Command, []string) error {
	if a.output != "table" && a.output != "json" {
		return usageError{fmt.Sprintf("-o %q: want table or json", a.output)}
	}
	return nil
}

// group is the RunE of a command that has subcommands: "help" prints its
// help, no argument runs none (nil: a usage error), anything else is an
// unknown command.
func (a *app) group(none func(c *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) == 1 && args[0] == "help":
			return c.Help()
		case len(args) > 0:
			return usageError{fmt.Sprintf("unknown command %q for %q\n\n%s", args[0], c.CommandPath(), c.UsageString())}
		case none == nil && c.HasParent():
			return usageError{fmt.Sprintf("%s: a command is required\n\n%s", c.CommandPath(), c.UsageString())}
		case none == nil:
			return usageError{"a command is required\n\n" + c.UsageString()}
		}
		return none(c)
	}
}

// action is a command's RunE: fn's errors are the command's own, not the
// command line's.
func (a *app) action(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		a.ran = true
		return fn(c.Context(), args)
	}
}

// nArgs accepts between lo and hi positional arguments (want: their
// usage), else a usage error naming the command.
func nArgs(lo, hi int, want string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageError{fmt.Sprintf("usage: %s %s (got %d arguments)", c.CommandPath(), want, len(args))}
		}
		return nil
	}
}

// logFlags registers --log-level and --log-format.
func logFlags(fs *pflag.FlagSet, level, format *string, defLevel string) {
	fs.StringVar(level, "log-level", defLevel, "debug, info, warn or error")
	fs.StringVar(format, "log-format", "text", "text (key=value) or json (one object a line)")
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

// adminToken reads the admin token: --admin-token-file, else
// RAFTING_ADMIN_TOKEN, else "".
func adminToken(file string) (string, error) {
	return secretFrom(file, "--admin-token-file", "RAFTING_ADMIN_TOKEN")
}
