package main

import (
	"fmt"
	"io"

	"github.com/rafting/rafting/server"
)

// runVersion prints the build: its release version, commit, Go version
// and the newest state version it speaks (as /v1/cluster shows each node's).
func runVersion(args []string, stdout io.Writer) error {
	fs := newFlagSet("version")
	output := fs.String("o", "table", "output: table or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"version takes no arguments"}
	}
	b := server.Build()
	switch *output {
	case "json":
		return printJSON(stdout, b)
	case "table":
		_, err := fmt.Fprintf(stdout, "rafting %s\ncommit %s\ngo %s\nstate version %d\n",
			dash(b.Version), dash(b.Commit), dash(b.GoVersion), b.StateVersion)
		return err
	}
	return usageError{fmt.Sprintf("-o %q: want table or json", *output)}
}
