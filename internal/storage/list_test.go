package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// seedPods creates pods ns{0,1}/p00..: even ones app=web, odd app=db;
// node n1 for the first half of each namespace.
func seedPods(t testing.TB, s Interface, perNS int) []*corev1.Pod {
	t.Helper()
	var out []*corev1.Pod
	for _, ns := range []string{"ns0", "ns1"} {
		for i := range perNS {
			b := makePod(ns, fmt.Sprintf("p%02d", i)).label("app", map[bool]string{true: "web", false: "db"}[i%2 == 0])
			if i < perNS/2 {
				b = b.node("n1")
			}
			out = append(out, mustCreate(t, s, b.obj()))
		}
	}
	return out
}

func podNames(t testing.TB, res *ListResult) []string {
	t.Helper()
	var out []string
	for _, o := range res.Items {
		p := o.(*corev1.Pod)
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

// listAll pages through a list, returning every name and each page size.
func listAll(t testing.TB, s Interface, prefix string, opts ListOptions) (all []string, pages []int, remaining []int64) {
	t.Helper()
	for {
		res, err := s.List(context.Background(), prefix, opts)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, podNames(t, res)...)
		pages = append(pages, len(res.Items))
		if res.RemainingItemCount != nil {
			remaining = append(remaining, *res.RemainingItemCount)
		}
		if res.Continue == "" {
			return all, pages, remaining
		}
		opts.Continue = res.Continue
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	seedPods(t, s, 6)

	tests := []struct {
		name          string
		prefix        string
		opts          ListOptions
		want          []string
		wantPages     []int
		wantRemaining []int64
	}{
		{name: "all", prefix: podPrefix, want: []string{"ns0/p00", "ns0/p01", "ns0/p02", "ns0/p03", "ns0/p04", "ns0/p05", "ns1/p00", "ns1/p01", "ns1/p02", "ns1/p03", "ns1/p04", "ns1/p05"}, wantPages: []int{12}},
		{name: "namespace", prefix: podPrefix + "ns1/", want: []string{"ns1/p00", "ns1/p01", "ns1/p02", "ns1/p03", "ns1/p04", "ns1/p05"}, wantPages: []int{6}},
		{name: "single key", prefix: podPrefix + "ns1/p03", want: []string{"ns1/p03"}, wantPages: []int{1}},
		{name: "label", prefix: podPrefix + "ns0/", opts: ListOptions{Predicate: labelPred(t, "app=web")}, want: []string{"ns0/p00", "ns0/p02", "ns0/p04"}, wantPages: []int{3}},
		{name: "field", prefix: podPrefix, opts: ListOptions{Predicate: fieldPred(t, "spec.nodeName=n1")}, want: []string{"ns0/p00", "ns0/p01", "ns0/p02", "ns1/p00", "ns1/p01", "ns1/p02"}, wantPages: []int{6}},
		{name: "pages", prefix: podPrefix + "ns0/", opts: ListOptions{Limit: 4}, want: []string{"ns0/p00", "ns0/p01", "ns0/p02", "ns0/p03", "ns0/p04", "ns0/p05"}, wantPages: []int{4, 2}, wantRemaining: []int64{2}},
		{name: "pages exact fit", prefix: podPrefix + "ns0/", opts: ListOptions{Limit: 3}, want: []string{"ns0/p00", "ns0/p01", "ns0/p02", "ns0/p03", "ns0/p04", "ns0/p05"}, wantPages: []int{3, 3}, wantRemaining: []int64{3}},
		// A filtered page is filled from several etcd reads; no estimate.
		{name: "filtered pages", prefix: podPrefix, opts: ListOptions{Limit: 2, Predicate: labelPred(t, "app=db")}, want: []string{"ns0/p01", "ns0/p03", "ns0/p05", "ns1/p01", "ns1/p03", "ns1/p05"}, wantPages: []int{2, 2, 2}},
		{name: "no match", prefix: podPrefix, opts: ListOptions{Limit: 2, Predicate: labelPred(t, "app=none")}, want: nil, wantPages: []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pages, remaining := listAll(t, s, tt.prefix, tt.opts)
			if !slices.Equal(got, tt.want) || !slices.Equal(pages, tt.wantPages) || !slices.Equal(remaining, tt.wantRemaining) {
				t.Errorf("got %v pages %v remaining %v\nwant %v pages %v remaining %v", got, pages, remaining, tt.want, tt.wantPages, tt.wantRemaining)
			}
		})
	}
}

func TestListResourceVersions(t *testing.T) {
	t.Parallel()
	s, client := newPodStore(t)
	ctx := context.Background()
	pods := seedPods(t, s, 2)
	before, err := s.List(ctx, podPrefix, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Changes after `before`: a later exact read must not see them.
	mustUpdate(t, s, podKey(pods[0]), func(p *corev1.Pod) { p.Spec.NodeName = "moved" })
	if _, err := s.Delete(ctx, podKey(pods[1]), nil, nil); err != nil {
		t.Fatal(err)
	}
	oldRV := strconv.FormatInt(before.ResourceVersion, 10)
	future := strconv.FormatInt(before.ResourceVersion+100, 10)

	// A paged list started now, continued after compaction.
	page, err := s.List(ctx, podPrefix, ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		compact  bool
		opts     ListOptions
		wantErr  error
		wantLen  int
		wantNode string // node of ns0/p00
		wantRV   int64
	}{
		{name: "exact sees the past", opts: ListOptions{ResourceVersion: oldRV, ResourceVersionMatch: MatchExact}, wantLen: 4, wantNode: "n1", wantRV: before.ResourceVersion},
		{name: "legacy rv with limit is exact", opts: ListOptions{ResourceVersion: oldRV, Limit: 10}, wantLen: 4, wantNode: "n1", wantRV: before.ResourceVersion},
		{name: "not older than reads latest", opts: ListOptions{ResourceVersion: oldRV, ResourceVersionMatch: MatchNotOlderThan}, wantLen: 3, wantNode: "moved"},
		{name: "not older than the future", opts: ListOptions{ResourceVersion: future, ResourceVersionMatch: MatchNotOlderThan}, wantErr: ErrTooLarge},
		{name: "exact in the future", opts: ListOptions{ResourceVersion: future, ResourceVersionMatch: MatchExact}, wantErr: ErrTooLarge},
		{name: "exact zero", opts: ListOptions{ResourceVersion: "0", ResourceVersionMatch: MatchExact}, wantErr: ErrInvalidResourceVersion},
		{name: "bad rv", opts: ListOptions{ResourceVersion: "abc"}, wantErr: ErrInvalidResourceVersion},
		{name: "bad continue", opts: ListOptions{Continue: "!!"}, wantErr: ErrInvalidContinue},
		{name: "exact after compaction", compact: true, opts: ListOptions{ResourceVersion: oldRV, ResourceVersionMatch: MatchExact}, wantErr: ErrExpired},
		{name: "continue after compaction", compact: true, opts: ListOptions{Limit: 1, Continue: page.Continue}, wantErr: ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.compact {
				// Compact past both the exact revision and the paged list.
				mustUpdate(t, s, podKey(pods[2]), func(p *corev1.Pod) { p.Spec.Hostname = tt.name })
				rev, err := client.Get(ctx, "/")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.Compact(ctx, rev.Header.Revision); err != nil {
					t.Fatal(err)
				}
			}
			res, err := s.List(ctx, podPrefix, tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if len(res.Items) != tt.wantLen || res.Items[0].(*corev1.Pod).Spec.NodeName != tt.wantNode {
				t.Errorf("got %v (first node %q), want %d items, first node %q", podNames(t, res), res.Items[0].(*corev1.Pod).Spec.NodeName, tt.wantLen, tt.wantNode)
			}
			if tt.wantRV != 0 && res.ResourceVersion != tt.wantRV {
				t.Errorf("list rv = %d, want %d", res.ResourceVersion, tt.wantRV)
			}
		})
	}
}
