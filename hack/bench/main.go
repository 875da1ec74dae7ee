// Command bench measures a real `skiff server`: it starts the binary on
// free ports in a temporary data directory and drives it with client-go,
// as any client would. It has four suites, each printing a table next to
// its goals. The api suite gives p50/p99 latencies and throughput of
// ConfigMap create, get, update and list, the delay of watch events, the
// server's idle memory and its start-up time. The scheduler suite gives
// pods/s scheduled, for the scheduler alone on its cache (the Go
// benchmark in internal/scheduler) and from pod creation to binding
// through the API server at 1,000 and 5,000 Node objects, plus a
// 3,000-replica Deployment on 100 nodes end to end. The agent suite runs a
// separate `skiff agent` node with its own containerd (as root) and gives
// pod start-up latencies, one at a time and 30 at once, the agent's and
// containerd's memory idle and busy, and the memory of hollow nodes. The
// services suite runs the service proxy's and DNS server's Go benchmarks
// (the proxy's as root, in network namespaces of its own) and gives the
// delay from an EndpointSlice change to its rule being live in the kernel
// and a full resync at 1,000 Services × 10 endpoints, and DNS queries/s.
//
//	go run ./hack/bench                 # builds bin/skiff first; all suites
//	go run ./hack/bench --skiff bin/skiff --suite api --clients 1,8 --n 1000
//	go run ./hack/bench --suite scheduler --sched-pods 1000
//	go run ./hack/bench --suite agent --hollow-nodes 1000
//	go run ./hack/bench --suite services --services-benchtime 500x
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// config is the benchmark's command line.
type config struct {
	skiff    string
	clients  []int
	n        int
	lists    int
	idle     time.Duration
	keepData bool
	suite    string
	sched    schedConfig
	agent    agentConfig
	services servicesConfig
}

func main() {
	var cfg config
	var clients string
	flag.StringVar(&cfg.skiff, "skiff", "", "skiff binary to run (default: build ./cmd/skiff into bin/skiff)")
	flag.StringVar(&clients, "clients", "1,8", "comma-separated concurrency levels")
	flag.IntVar(&cfg.n, "n", 1000, "creates, gets and updates per level (split across the clients); also the objects per list")
	flag.IntVar(&cfg.lists, "lists", 50, "lists per level")
	flag.DurationVar(&cfg.idle, "idle", 10*time.Second, "how long the server idles before each RSS reading")
	flag.BoolVar(&cfg.keepData, "keep", false, "keep the data directories and logs")
	flag.StringVar(&cfg.suite, "suite", "all", "what to measure: api, scheduler, agent, services or all")
	cfg.sched.flags()
	cfg.agent.flags()
	cfg.services.flags()
	flag.Parse()
	var names []string
	for _, s := range suites() {
		names = append(names, s.name)
	}
	if !slices.Contains(names, cfg.suite) && cfg.suite != "all" {
		fmt.Fprintf(os.Stderr, "bench: bad --suite %q: want %s or all\n", cfg.suite, strings.Join(names, ", "))
		os.Exit(2)
	}
	for _, f := range strings.Split(clients, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "bench: bad --clients %q\n", clients)
			os.Exit(2)
		}
		cfg.clients = append(cfg.clients, c)
	}

	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		slog.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// run starts the server, measures, prints the report and stops the server.
func run(ctx context.Context, cfg config) (err error) {
	bin := cfg.skiff
	if bin == "" {
		bin = filepath.Join("bin", "skiff")
		slog.InfoContext(ctx, "building", "out", bin)
		// hack/build.sh, not a plain go build: its static build is the
		// one whose memory the goals are about.
		build := exec.CommandContext(ctx, "./hack/build.sh", bin)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if err := dropPageCache(bin); err != nil {
		return err
	}
	for i, suite := range suites() {
		if cfg.suite != suite.name && cfg.suite != "all" {
			continue
		}
		if cfg.suite == "all" && i > 0 {
			fmt.Println()
		}
		if err := suite.run(ctx, cfg, bin); err != nil {
			return err
		}
	}
	return nil
}

// suite is one part of the benchmark that --suite names.
type suite struct {
	name string
	run  func(ctx context.Context, cfg config, bin string) error
}

// suites returns the suites in the order "all" runs them.
func suites() []suite {
	return []suite{{"api", runAPI}, {"scheduler", runScheduler}, {"agent", runAgentSuite}, {"services", runServicesSuite}}
}

// runAPI is the api suite: one server, ConfigMap latencies, memory.
func runAPI(ctx context.Context, cfg config, bin string) (err error) {
	dir, err := os.MkdirTemp("", "skiff-bench-")
	if err != nil {
		return err
	}
	if cfg.keepData {
		defer slog.InfoContext(ctx, "kept data directory", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	srv, err := startServer(ctx, bin, dir)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := srv.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	rep := &report{idleWait: cfg.idle, objects: cfg.n * len(cfg.clients)}
	if rep.readyAfter, err = srv.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	rep.readySelf = srv.selfReportedReady()
	slog.InfoContext(ctx, "server ready", "after", rep.readyAfter)

	slog.InfoContext(ctx, "idling before the first RSS reading", "for", cfg.idle)
	if err := sleep(ctx, cfg.idle); err != nil {
		return err
	}
	if rep.idleStart, err = srv.readMemory(); err != nil {
		return err
	}

	base, err := clientcmd.BuildConfigFromFlags("", srv.kubeconfig())
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	for _, c := range cfg.clients {
		slog.InfoContext(ctx, "measuring", "clients", c, "n", cfg.n)
		res, err := level(ctx, base, c, cfg.n, cfg.lists)
		if err != nil {
			return fmt.Errorf("%d clients: %w", c, err)
		}
		rep.results = append(rep.results, res...)
	}

	slog.InfoContext(ctx, "idling before the second RSS reading", "for", cfg.idle)
	if err := sleep(ctx, cfg.idle); err != nil {
		return err
	}
	if rep.idleAfter, err = srv.readMemory(); err != nil {
		return err
	}
	rep.print(os.Stdout)
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return errors.Join(errors.New("interrupted"), ctx.Err())
	}
}
