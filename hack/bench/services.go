package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// servicesConfig is the services suite's part of the command line.
type servicesConfig struct {
	ruleBenchtime   string // -benchtime of the rule-live run: EndpointSlice updates timed
	resyncBenchtime string // -benchtime of the full-resync run: whole tables written
	dnsBenchtime    string // -benchtime of the DNS run: queries answered
	timeout         time.Duration
}

func (c *servicesConfig) flags() {
	flag.StringVar(&c.ruleBenchtime, "services-benchtime", "200x",
		"services suite: -benchtime of BenchmarkProxy/RuleLive (EndpointSlice updates timed; empty skips it)")
	flag.StringVar(&c.resyncBenchtime, "services-resync-benchtime", "20x",
		"services suite: -benchtime of BenchmarkProxy/FullResync (full table rewrites; empty skips it)")
	flag.StringVar(&c.dnsBenchtime, "dns-benchtime", "100000x",
		"services suite: -benchtime of BenchmarkQueries (DNS queries; empty skips it)")
	flag.DurationVar(&c.timeout, "services-timeout", 10*time.Minute, "services suite: -timeout of each go test run")
}

// Packages and benchmarks the services suite runs: the numbers are the Go
// benchmarks', so that `make bench` and a developer's `go test -bench`
// measure the same thing.
const (
	proxyPkg   = "./internal/proxy"
	proxyBench = "BenchmarkProxy"
	dnsPkg     = "./internal/dns"
	dnsBench   = "BenchmarkQueries"
)

// runServicesSuite runs the proxy and DNS benchmarks and prints the
// report. The proxy needs root (it creates network namespaces and
// nftables tables); without it only DNS is measured.
func runServicesSuite(ctx context.Context, cfg config, _ string) error {
	sc := cfg.services
	rep := &servicesReport{load: [2]string{loadAverage(), ""}}
	if os.Geteuid() != 0 {
		rep.proxySkipped = "needs root: the proxy benchmark creates its own network namespaces and nftables tables"
		slog.WarnContext(ctx, "skipping the proxy benchmark", "reason", rep.proxySkipped)
	} else {
		// Two runs, each with its own control plane and 1,000 Services,
		// because -benchtime is one count for all sub-benchmarks: enough
		// rule updates for a p99 would make the resync run minutes long.
		if sc.ruleBenchtime != "" {
			res, logs, err := goBench(ctx, proxyPkg, "^"+proxyBench+"$/^RuleLive$", sc.ruleBenchtime, sc.timeout)
			if err != nil {
				return fmt.Errorf("proxy rule-live benchmark: %w", err)
			}
			if rep.ruleLive, err = findBench(res, proxyBench+"/RuleLive", "p50-ms", "p99-ms", "max-ms"); err != nil {
				return err
			}
			rep.notes = append(rep.notes, logs...)
		}
		if sc.resyncBenchtime != "" {
			res, _, err := goBench(ctx, proxyPkg, "^"+proxyBench+"$/^FullResync$", sc.resyncBenchtime, sc.timeout)
			if err != nil {
				return fmt.Errorf("proxy full-resync benchmark: %w", err)
			}
			if rep.resync, err = findBench(res, proxyBench+"/FullResync", "ms/op", "build-ms/op"); err != nil {
				return err
			}
		}
	}
	if sc.dnsBenchtime != "" {
		res, _, err := goBench(ctx, dnsPkg, "^"+dnsBench+"$", sc.dnsBenchtime, sc.timeout)
		if err != nil {
			return fmt.Errorf("dns benchmark: %w", err)
		}
		if rep.dns, err = findBench(res, dnsBench, "queries/s"); err != nil {
			return err
		}
	}
	rep.load[1] = loadAverage()
	rep.print(os.Stdout)
	return nil
}

// benchResult is one result line of `go test -bench`.
type benchResult struct {
	name    string             // without the -GOMAXPROCS suffix
	n       int                // iterations
	metrics map[string]float64 // by unit: "ns/op", "p99-ms", …
}

// findBench returns the result called name, which must report every one
// of units: a benchmark renamed or a metric dropped should fail the suite,
// not print zeros.
func findBench(res []benchResult, name string, units ...string) (benchResult, error) {
	for _, r := range res {
		if r.name != name {
			continue
		}
		for _, u := range units {
			if _, ok := r.metrics[u]; !ok {
				return r, fmt.Errorf("%s reported no %q", name, u)
			}
		}
		return r, nil
	}
	return benchResult{}, fmt.Errorf("no result for %s", name)
}

// procsSuffix is the -GOMAXPROCS suffix go test appends to names.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// benchLog is a b.Log line in go test's output: benchmarks' logs are
// always printed.
var benchLog = regexp.MustCompile(`^\s+\S+_test\.go:\d+: (.+)$`)

// parseBenchOutput returns the result lines in go test -bench output,
// and the benchmarks' log messages.
func parseBenchOutput(out string) (res []benchResult, logs []string) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := benchLog.FindStringSubmatch(line); m != nil {
			logs = append(logs, m[1])
			continue
		}
		if r, ok := parseBenchLine(line); ok {
			res = append(res, r)
		}
	}
	return res, logs
}

// parseBenchLine parses "BenchmarkX/sub-2  200  5123 ns/op  3.10 p50-ms":
// a name, the iteration count, then value–unit pairs.
func parseBenchLine(line string) (benchResult, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return benchResult{}, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return benchResult{}, false
	}
	r := benchResult{name: procsSuffix.ReplaceAllString(f[0], ""), n: n, metrics: map[string]float64{}}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return benchResult{}, false
		}
		r.metrics[f[i+1]] = v
	}
	return r, true
}

// goBench runs `go test -v -run '^$' -bench pattern -benchtime benchtime pkg`
// from the module root and parses its output.
func goBench(ctx context.Context, pkg, pattern, benchtime string, timeout time.Duration) (_ []benchResult, _ []string, err error) {
	slog.InfoContext(ctx, "go test -bench", "pkg", pkg, "bench", pattern, "benchtime", benchtime)
	began := time.Now()
	// An interrupted test binary exits without its cleanups: its
	// t.TempDir data (the control plane's etcd) goes under a TMPDIR of
	// ours that is removed in any case. Its network namespaces are
	// unnamed and go with the process.
	tmp, err := os.MkdirTemp("", "skiff-bench-gotest-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", tmp, rmErr))
		}
	}()
	// -v, because go test prints a parent benchmark's logs only then.
	cmd := exec.CommandContext(ctx, "go", "test", "-v", "-run", "^$", "-bench", pattern, "-benchtime", benchtime,
		"-timeout", timeout.String(), pkg)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stderr = os.Stderr
	// The test binary is go's child: a process group of their own lets
	// the interrupt reach both, where killing only go would leave the
	// binary running on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	outb, err := cmd.Output()
	out := string(outb)
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("go test -bench %s %s: %w", pattern, pkg, err), errors.New(tail(out, 4000)))
	}
	res, logs := parseBenchOutput(out)
	if len(res) == 0 {
		return nil, nil, fmt.Errorf("go test -bench %s %s: no results in:\n%s", pattern, pkg, tail(out, 4000))
	}
	slog.InfoContext(ctx, "go test -bench done", "pkg", pkg, "took", time.Since(began).Round(time.Millisecond))
	return res, logs, nil
}

// tail is the last n bytes of s, marked when cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
