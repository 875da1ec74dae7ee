package main

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"
)

// Issue 6's goals for the service proxy at 1,000 Services × 10 endpoints.
// The issue sets no upstream numbers for them, nor a goal for DNS.
const (
	goalRuleLiveP99 = 100 * time.Millisecond
	goalFullResync  = time.Second
)

// servicesReport is everything the services suite measured. A result
// with n == 0 was not measured.
type servicesReport struct {
	proxySkipped string // why the proxy was not measured, or ""
	ruleLive     benchResult
	resync       benchResult
	dns          benchResult
	// notes are the proxy benchmark's own log lines (how long creating
	// the Services and the proxy's start took).
	notes []string
	// load is /proc/loadavg's 1-minute average before and after the
	// runs: they are CPU-bound, and the machine may be shared.
	load [2]string
}

// msMetric is a benchmark metric in milliseconds as a duration.
func msMetric(r benchResult, unit string) time.Duration {
	return time.Duration(r.metrics[unit] * float64(time.Millisecond))
}

func (r *servicesReport) print(w io.Writer) {
	fmt.Fprintln(w, "services: 1,000 Services × 10 endpoints in a real API server, one proxy writing nftables in a network namespace of its own")
	fmt.Fprintf(w, "(go test -bench %s %s); DNS: random A queries for 1,000 Services over loopback, 8 clients per CPU (-bench %s %s)\n",
		proxyBench, proxyPkg, dnsBench, dnsPkg)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tn\tresult\tgoal")
	notRun := func(what string) {
		why := "not run (empty -benchtime flag)"
		if r.proxySkipped != "" {
			why = "skipped (" + r.proxySkipped + ")"
		}
		fmt.Fprintf(tw, "%s\t-\t%s\t-\n", what, why)
	}
	if rl := r.ruleLive; rl.n > 0 {
		p99 := msMetric(rl, "p99-ms")
		fmt.Fprintf(tw, "EndpointSlice update → rule live, p50\t%d\t%s\t-\n", rl.n, ms(msMetric(rl, "p50-ms")))
		fmt.Fprintf(tw, "EndpointSlice update → rule live, p99\t%d\t%s\t< %s — %s\n", rl.n, ms(p99), ms(goalRuleLiveP99), goalMet(p99 < goalRuleLiveP99))
		fmt.Fprintf(tw, "EndpointSlice update → rule live, max\t%d\t%s\t-\n", rl.n, ms(msMetric(rl, "max-ms")))
	} else {
		notRun("EndpointSlice update → rule live")
	}
	if rs := r.resync; rs.n > 0 {
		op := msMetric(rs, "ms/op")
		fmt.Fprintf(tw, "full resync (build + write the table)\t%d\t%s (build %s)\t< %s — %s\n", rs.n, dur(op),
			ms(msMetric(rs, "build-ms/op")), dur(goalFullResync), goalMet(op < goalFullResync))
	} else {
		notRun("full resync")
	}
	if d := r.dns; d.n > 0 {
		fmt.Fprintf(tw, "DNS queries answered\t%d\t%.0f/s\t-\n", d.n, d.metrics["queries/s"])
	} else {
		fmt.Fprintf(tw, "DNS queries answered\t-\tnot run (empty --dns-benchtime)\t-\n")
	}
	tw.Flush()
	for _, n := range r.notes {
		fmt.Fprintf(w, "proxy benchmark: %s\n", n)
	}
	fmt.Fprintf(w, "load average (1 min) before the runs %s, after them %s, on %d CPUs\n", r.load[0], r.load[1], runtime.NumCPU())
}
