package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Upstream's numbers on the reference machine, from the issue, and the
// goals set against them.
const (
	upstreamCreateP50   = 1900 * time.Microsecond
	upstreamCreateP99   = 6 * time.Millisecond
	upstreamCreateRate  = 450.0 // sequential creates per second
	upstreamIdleRSSMB   = 520
	goalCreateRateRatio = 2.0 // × upstream's create throughput, at 8 clients
	goalCreateP99       = 6 * time.Millisecond
	goalIdleRSSMB       = 100
)

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 1) of d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ms renders a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch a := max(v, -v); {
	case a < 10:
		return fmt.Sprintf("%.2f ms", v)
	case a < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// mb renders bytes as MB (2^20).
func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// summary is a row's numbers.
type summary struct {
	p50, p99 time.Duration
	rate     float64 // operations per second; 0 when not meaningful
}

func summarize(r result) summary {
	s := slices.Clone(r.lat)
	slices.Sort(s)
	out := summary{p50: percentile(s, 0.50), p99: percentile(s, 0.99)}
	if r.wall > 0 {
		out.rate = float64(len(r.lat)) / r.wall.Seconds()
	}
	return out
}

// report is everything measured in one run.
type report struct {
	results              []result
	readyAfter           time.Duration
	readySelf            string // the server's own sinceProcessStart, if logged
	idleStart, idleAfter memory
	idleWait             time.Duration
	objects              int
}

// print writes the results table, the memory and start-up lines, and the
// goals with whether each is met.
func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "op\tclients\tn\tp50\tp99\tthroughput")
	sums := map[string]summary{}
	for _, res := range r.results {
		s := summarize(res)
		sums[fmt.Sprintf("%s/%d", res.op, res.clients)] = s
		rate := "-"
		if s.rate > 0 {
			rate = fmt.Sprintf("%.0f/s", s.rate)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", res.op, res.clients, len(res.lat), ms(s.p50), ms(s.p99), rate)
	}
	fmt.Fprintf(tw, "upstream create\t1\t1000\t%s\t%s\t%.0f/s\t(v1.37.2, reference)\n", ms(upstreamCreateP50), ms(upstreamCreateP99), upstreamCreateRate)
	tw.Flush()

	ready := r.readyAfter.Round(time.Millisecond).String()
	if r.readySelf != "" {
		ready += " (server's own log: " + r.readySelf + ")"
	}
	fmt.Fprintf(w, "\nserver idle RSS: %s after start (%s idle); %s after the bench with %d objects (%s idle; peak %s)\n",
		mb(r.idleStart.RSS), r.idleWait, mb(r.idleAfter.RSS), r.objects, r.idleWait, mb(r.idleAfter.HWM))
	fmt.Fprintf(w, "ready after %s from process start (first 200 from /readyz)\n", ready)
	fmt.Fprintln(w, "watch delay: from a create's response to its event at a separate watcher (negative: the event came first)")

	fmt.Fprintln(w, "\ngoals:")
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT MET"
	}
	if c8, ok := sums["create/8"]; ok {
		goal := goalCreateRateRatio * upstreamCreateRate
		fmt.Fprintf(w, "  create throughput, 8 clients ≥ %.0f/s (2× upstream's %.0f/s): %.0f/s, %.1f× upstream — %s\n",
			goal, upstreamCreateRate, c8.rate, c8.rate/upstreamCreateRate, check(c8.rate >= goal))
	}
	if c1, ok := sums["create/1"]; ok {
		fmt.Fprintf(w, "  create p99, 1 client < %s (upstream p99 %s, p50 %s): p99 %s, p50 %s — %s\n",
			ms(goalCreateP99), ms(upstreamCreateP99), ms(upstreamCreateP50), ms(c1.p99), ms(c1.p50), check(c1.p99 < goalCreateP99))
	}
	fmt.Fprintf(w, "  idle RSS < %d MB (upstream ~%d MB): %s — %s\n",
		goalIdleRSSMB, upstreamIdleRSSMB, mb(r.idleStart.RSS), check(r.idleStart.RSS < goalIdleRSSMB<<20))
}
