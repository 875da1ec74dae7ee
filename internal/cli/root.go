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
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
