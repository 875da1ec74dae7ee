package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseBenchLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want benchResult
		ok   bool
	}{
		{
			name: "sub-benchmark with custom metrics",
			line: "BenchmarkProxy/RuleLive-2   \t     200\t  4123456 ns/op\t         3.100 p50-ms\t        12.40 p99-ms\t        20.00 max-ms",
			want: benchResult{name: "BenchmarkProxy/RuleLive", n: 200,
				metrics: map[string]float64{"ns/op": 4123456, "p50-ms": 3.1, "p99-ms": 12.4, "max-ms": 20}},
			ok: true,
		},
		{
			name: "benchmem columns",
			line: "BenchmarkQueries-8  100000  21000 ns/op  47000 queries/s  512 B/op  9 allocs/op",
			want: benchResult{name: "BenchmarkQueries", n: 100000,
				metrics: map[string]float64{"ns/op": 21000, "queries/s": 47000, "B/op": 512, "allocs/op": 9}},
			ok: true,
		},
		{
			name: "no GOMAXPROCS suffix",
			line: "BenchmarkQueries 10 5 ns/op",
			want: benchResult{name: "BenchmarkQueries", n: 10, metrics: map[string]float64{"ns/op": 5}},
			ok:   true,
		},
		{name: "name only, before a sub-benchmark's logs", line: "BenchmarkProxy"},
		{name: "not a benchmark", line: "ok  \tgithub.com/skiffhq/skiff/internal/dns\t3.2s"},
		{name: "iterations not a number", line: "BenchmarkX-2  many  5 ns/op"},
		{name: "value not a number", line: "BenchmarkX-2  10  fast ns/op"},
		{name: "unit missing", line: "BenchmarkX-2  10  5 ns/op  7"},
		{name: "skip line", line: "--- SKIP: BenchmarkProxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseBenchLine(tt.line)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseBenchOutput(t *testing.T) {
	out := strings.Join([]string{
		"goos: linux",
		"goarch: amd64",
		"pkg: github.com/skiffhq/skiff/internal/proxy",
		"BenchmarkProxy",
		"    bench_test.go:63: created 1000 services with 10 endpoints each in 4.2s",
		"    bench_test.go:77: proxy ready (informers synced, table written) in 310ms",
		"BenchmarkProxy/FullResync-2         \t      20\t 250000000 ns/op\t        80.00 build-ms/op\t       250.0 ms/op",
		"PASS",
		"ok  \tgithub.com/skiffhq/skiff/internal/proxy\t12.3s",
	}, "\n")
	res, logs := parseBenchOutput(out)
	wantLogs := []string{
		"created 1000 services with 10 endpoints each in 4.2s",
		"proxy ready (informers synced, table written) in 310ms",
	}
	if !reflect.DeepEqual(logs, wantLogs) {
		t.Errorf("logs = %q, want %q", logs, wantLogs)
	}
	tests := []struct {
		name    string
		bench   string
		units   []string
		wantErr bool
	}{
		{name: "present with its metrics", bench: "BenchmarkProxy/FullResync", units: []string{"ms/op", "build-ms/op"}},
		{name: "metric missing", bench: "BenchmarkProxy/FullResync", units: []string{"p99-ms"}, wantErr: true},
		{name: "benchmark missing", bench: "BenchmarkProxy/RuleLive", wantErr: true},
		{name: "parent has no result line", bench: "BenchmarkProxy", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := findBench(res, tt.bench, tt.units...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (r.n != 20 || r.metrics["ms/op"] != 250) {
				t.Errorf("got %+v", r)
			}
		})
	}
}

func TestServicesReportGoals(t *testing.T) {
	rule := func(p99 float64) benchResult {
		return benchResult{name: "BenchmarkProxy/RuleLive", n: 200, metrics: map[string]float64{"p50-ms": 2, "p99-ms": p99, "max-ms": p99 + 1}}
	}
	resync := func(op float64) benchResult {
		return benchResult{name: "BenchmarkProxy/FullResync", n: 20, metrics: map[string]float64{"ms/op": op, "build-ms/op": op / 2}}
	}
	dns := benchResult{name: "BenchmarkQueries", n: 1000, metrics: map[string]float64{"queries/s": 42000}}
	tests := []struct {
		name string
		rep  servicesReport
		want []string // substrings of the output, in order
	}{
		{
			name: "both goals met",
			rep:  servicesReport{ruleLive: rule(12), resync: resync(400), dns: dns},
			want: []string{"rule live, p99", "12.0 ms", "< 100 ms — met", "full resync", "400 ms (build 200 ms)", "< 1.00 s — met", "42000/s"},
		},
		{
			name: "both goals missed",
			rep:  servicesReport{ruleLive: rule(100), resync: resync(1500), dns: dns},
			want: []string{"rule live, p99", "100 ms", "NOT MET", "full resync", "1.50 s", "NOT MET"},
		},
		{
			name: "proxy skipped without root",
			rep:  servicesReport{proxySkipped: "needs root", dns: dns},
			want: []string{"rule live", "skipped (needs root)", "full resync", "skipped (needs root)", "42000/s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.rep.print(&b)
			out := b.String()
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("no %q (in order) in:\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
