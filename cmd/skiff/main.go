// Command skiff is the whole orchestrator in one binary: `skiff server`
// runs a control plane, `skiff kubectl` is upstream kubectl.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/cli"
)

func main() {
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.NewRoot(start).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		stop()
		os.Exit(1)
	}
}
