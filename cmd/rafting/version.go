package main

import (
	"context"
	"fmt"

	"github.com/rafting/rafting/server"
	"github.com/spf13/cobra"
)

// versionCmd prints the build: its release version, commit, Go version
// and the newest state version it speaks (as /v1/cluster shows each node's).
func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "this binary's version, commit and Go version",
		Args:  nArgs(0, 0, ""),
		RunE: a.action(func(context.Context, []string) error {
			b := server.Build()
			if a.json() {
				return printJSON(a.stdout, b)
			}
			_, err := fmt.Fprintf(a.stdout, "rafting %s\ncommit %s\ngo %s\nstate version %d\n",
				dash(b.Version), dash(b.Commit), dash(b.GoVersion), b.StateVersion)
			return err
		}),
	}
}
