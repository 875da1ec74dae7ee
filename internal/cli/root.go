// Package cli turns command lines into component configurations: one file
// per subcommand. Components never read flags themselves.
package cli

import (
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// NewRoot returns the `skiff` command with every subcommand. start is the
// process start time, for start-up timing logs.
func NewRoot(start time.Time) *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "A Kubernetes-compatible container orchestrator in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(start), newAgentCommand(), newImageCommand(), newKubectlCommand(),
		newEtcdCommand(), newEtcdSnapshotCommand())
	return root
}

// newLogger returns the process logger: text lines on stderr.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	warnCgoBuild(log, cgoBuild)
	return log
}

// warnCgoBuild tells whoever built skiff with a plain `go build` why its
// long-running commands use more memory than they should.
func warnCgoBuild(log *slog.Logger, cgo bool) {
	if cgo {
		log.Warn("skiff was built with cgo, which makes the Go linker keep and export every symbol; build with CGO_ENABLED=0 (make build) for ~35 MB less memory")
	}
}
