package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Upstream's numbers from the issue (a v1.37.2 kubelet with the same
// containerd on the reference machine) and the goals set against them.
const (
	upstreamPodStart      = 500 * time.Millisecond
	upstreamBurstP50      = 5100 * time.Millisecond
	upstreamBurstP99      = 5500 * time.Millisecond
	goalPodStartRatio     = 0.5 // of upstream's start-up latencies
	upstreamKubeletIdleMB = 85
	goalAgentIdleMB       = 40
	goalHollowNodeMiB     = 2 // per hollow node: 1,000 in < 2 GiB
)

// agentReport is everything the agent suite measured.
type agentReport struct {
	samples, burst int
	settle         time.Duration

	skipped   string // why the real node was not measured, or ""
	nodeReady time.Duration
	first     time.Duration   // the node's first pod, which also sets up the bridge
	single    []time.Duration // pods one at a time
	burstLat  []time.Duration // pods created at once
	idle      nodeMemory
	busy      nodeMemory // with the burst's pods running
	// load is /proc/loadavg's 1-minute average before the pod rounds and
	// after them: the rounds are CPU-bound, and the machine may be shared.
	load [2]string
	// bridgeShared: another skiff node on this machine had pods on the
	// same pod bridge, so ran at the same time as the measurement.
	bridgeShared bool

	hollow                    int // 0: not measured
	hollowReady               time.Duration
	hollowSettle              time.Duration
	hollowStillReady          int // Ready at the memory reading
	hollowAgent, hollowServer memory
}

// dur renders a duration in ms below a second, else in seconds.
func dur(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func goalMet(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func (r *agentReport) print(w io.Writer) {
	if r.skipped != "" {
		fmt.Fprintf(w, "node agent, real node: skipped (%s)\n", r.skipped)
	} else {
		r.printPods(w)
		fmt.Fprintln(w)
	}
	r.printMemory(w)
}

// printPods writes the start-up latency table.
func (r *agentReport) printPods(w io.Writer) {
	fmt.Fprintln(w, "node agent, pod start-up: from just before the create to the pod's first Running seen by a watch (scheduler included;")
	fmt.Fprintln(w, "skiff.local/busybox:1 running sleep 3600; one real `skiff agent` node with its own containerd)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pods\tn\tp50\tp99\tupstream v1.37.2\tgoal (½ upstream)")
	fmt.Fprintf(tw, "first on the node\t1\t%s\t%s\t-\t-\n", dur(r.first), dur(r.first))
	one := sortedCopy(r.single)
	goalOne := time.Duration(goalPodStartRatio * float64(upstreamPodStart))
	p50 := percentile(one, 0.50)
	fmt.Fprintf(tw, "one at a time\t%d\t%s\t%s\t≈ %s\tp50 ≤ %s — %s\n", len(one), dur(p50), dur(percentile(one, 0.99)),
		dur(upstreamPodStart), dur(goalOne), goalMet(p50 <= goalOne))
	all := sortedCopy(r.burstLat)
	goal50 := time.Duration(goalPodStartRatio * float64(upstreamBurstP50))
	goal99 := time.Duration(goalPodStartRatio * float64(upstreamBurstP99))
	p50, p99 := percentile(all, 0.50), percentile(all, 0.99)
	fmt.Fprintf(tw, "%d at once\t%d\t%s\t%s\tp50 %s, p99 %s (30 pods)\tp50 ≤ %s, p99 ≤ %s — %s\n", r.burst, len(all), dur(p50), dur(p99),
		dur(upstreamBurstP50), dur(upstreamBurstP99), dur(goal50), dur(goal99), goalMet(p50 <= goal50 && p99 <= goal99))
	tw.Flush()
	fmt.Fprintf(w, "node Ready %s after `skiff agent` started (join, containerd, image import, registration)\n", dur(r.nodeReady))
	fmt.Fprintf(w, "load average (1 min) before the pod rounds %s, after them %s, on %d CPUs\n", r.load[0], r.load[1], runtime.NumCPU())
	if r.bridgeShared {
		fmt.Fprintf(w, "WARNING: another skiff node on this machine had pods on bridge %s during the run: these numbers are suspect\n", podBridge)
	}
}

// printMemory writes the memory table.
func (r *agentReport) printMemory(w io.Writer) {
	fmt.Fprintf(w, "node agent, memory (VmRSS, its RssAnon part, smaps_rollup Pss; read after %s of settling, hollow nodes after %s)\n", r.settle, r.hollowSettle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "process\tRSS\tanon\tPSS\tupstream v1.37.2\tgoal")
	if r.skipped == "" {
		fmt.Fprintf(tw, "agent, node idle\t%s\tkubelet ≈ %d MB\t< %d MB — %s\n", memCols(r.idle.agent),
			upstreamKubeletIdleMB, goalAgentIdleMB, goalMet(r.idle.agent.RSS < goalAgentIdleMB<<20))
		fmt.Fprintf(tw, "containerd, node idle\t%s\t-\t-\n", memCols(r.idle.containerd))
		fmt.Fprintf(tw, "agent, %d pods running\t%s\t-\t-\n", r.burst, memCols(r.busy.agent))
		fmt.Fprintf(tw, "containerd, %d pods running\t%s\t-\t-\n", r.burst, memCols(r.busy.containerd))
		fmt.Fprintf(tw, "%d shims, %d pods running (sum)\t%s\t-\t-\n", r.busy.shimCount, r.burst, memCols(r.busy.shims))
	}
	if r.hollow > 0 {
		perNode := float64(r.hollowAgent.RSS) / float64(r.hollow) / (1 << 20)
		fmt.Fprintf(tw, "agent --simulate %d\t%s\t-\t-\n", r.hollow, memCols(r.hollowAgent))
		verdict := goalMet(perNode < goalHollowNodeMiB)
		if r.hollowStillReady < r.hollow {
			verdict += fmt.Sprintf(", but only %d of %d nodes stayed Ready", r.hollowStillReady, r.hollow)
		}
		fmt.Fprintf(tw, "  per hollow node\t%.2f MB\t-\t-\t-\t< %d MB (1,000 in < 2 GiB) — %s\n", perNode, goalHollowNodeMiB, verdict)
		fmt.Fprintf(tw, "server with %d hollow nodes\t%s\t-\t-\n", r.hollow, memCols(r.hollowServer))
	}
	tw.Flush()
	if r.hollow > 0 {
		fmt.Fprintf(w, "%d hollow nodes Ready %s after `skiff agent --simulate` started; %d of them Ready at the memory reading, %s later\n",
			r.hollow, dur(r.hollowReady), r.hollowStillReady, r.hollowSettle)
	}
}

// memCols renders a sample as the RSS, anon and PSS columns; "-" for
// what the kernel did not give.
func memCols(m memory) string {
	cols := []string{mb(m.RSS), "-", "-"}
	if m.Anon > 0 {
		cols[1] = mb(m.Anon)
	}
	if m.PSS > 0 {
		cols[2] = mb(m.PSS)
	}
	return strings.Join(cols, "\t")
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
