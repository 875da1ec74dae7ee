package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

var testNode = ruleset.Node{
	Name:        "node-a",
	IPs:         []netip.Addr{netip.MustParseAddr("192.168.50.1")},
	ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
}

// newWriter returns a writer for a table in a fresh network namespace.
func newWriter(t *testing.T) (*Writer, func() map[string][]string) {
	t.Helper()
	proxytest.RequireRoot(t)
	ns := proxytest.NewNetns(t)
	w, err := New(Config{Table: "skiff-proxy-test", NetNS: int(ns), Logger: proxytest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, func() map[string][]string { return proxytest.NFTChains(t, ns, "skiff-proxy-test") }
}

func svcGroup(svc *corev1.Service, slices ...*discoveryv1.EndpointSlice) *ruleset.Group {
	return ruleset.Service(testNode, svc, slices)
}

// wantChains is what nft should print for groups: each chain's hook line
// (for base chains) and rules.
func wantChains(groups map[string]*ruleset.Group) map[string][]string {
	// nft names the standard priorities only on the hooks they are
	// standard for.
	prio := func(h *ruleset.Hook) string {
		switch {
		case h.Priority == ruleset.PriorityDstNAT && h.Hook == "prerouting":
			return "dstnat"
		case h.Priority == ruleset.PrioritySrcNAT && h.Hook == "postrouting":
			return "srcnat"
		case h.Priority == ruleset.PriorityFilter:
			return "filter - 10"
		}
		return fmt.Sprint(h.Priority)
	}
	out := map[string][]string{}
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, c := range g.Chains {
			lines := []string{}
			if c.Hook != nil {
				lines = append(lines, fmt.Sprintf("type %s hook %s priority %s; policy accept;", c.Hook.Type, c.Hook.Hook, prio(c.Hook)))
			}
			for _, r := range c.Rules {
				lines = append(lines, r.String())
			}
			out[c.Name] = lines
		}
	}
	return out
}

func diffChains(t *testing.T, got, want map[string][]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[name]; !ok {
			t.Errorf("chain %s missing from the kernel", name)
		} else if !slices.Equal(g, want[name]) {
			t.Errorf("chain %s:\n got: %s\nwant: %s", name, strings.Join(g, "\n      "), strings.Join(want[name], "\n      "))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected chain %s in the kernel", name)
		}
	}
}

// elements reads a map's elements back through the library, as
// "key : verdict" strings in nft's notation.
func elements(t *testing.T, w *Writer, set string, kt ruleset.KeyType) []string {
	t.Helper()
	s, err := w.read.GetSetByName(w.table, set)
	if err != nil {
		t.Fatalf("get set %s: %v", set, err)
	}
	elems, err := w.read.GetSetElements(s)
	if err != nil {
		t.Fatalf("elements of %s: %v", set, err)
	}
	var out []string
	for _, e := range elems {
		k := decodeKey(kt, e.Key)
		if s.IsMap {
			out = append(out, fmt.Sprintf("%s : %s", k, decodeVerdict(t, e.Val)))
		} else {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func wantElements(groups map[string]*ruleset.Group, set string, kt ruleset.KeyType) []string {
	var out []string
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, e := range g.Elements {
			if e.Set != set {
				continue
			}
			if e.Verdict == nil {
				out = append(out, e.Key.Format(kt))
				continue
			}
			parts := strings.SplitN(e.Verdict.String(), " ", 2)
			if len(parts) == 1 {
				parts = append(parts, "")
			}
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s : %s %s", e.Key.Format(kt), parts[0], parts[1])))
		}
	}
	slices.Sort(out)
	return out
}

func decodeKey(kt ruleset.KeyType, b []byte) string {
	var k ruleset.Key
	switch kt {
	case ruleset.KeyAddr:
		k.Addr = netip.AddrFrom4([4]byte(b[:4]))
	case ruleset.KeyAddrProtoPort:
		k.Addr = netip.AddrFrom4([4]byte(b[:4]))
		k.Proto = ruleset.Proto(b[4])
		k.Port = uint16(b[8])<<8 | uint16(b[9])
	case ruleset.KeyProtoPort:
		k.Proto = ruleset.Proto(b[0])
		k.Port = uint16(b[4])<<8 | uint16(b[5])
	case ruleset.KeyIndex:
		k.Index = binary.NativeEndian.Uint32(b)
	}
	return k.Format(kt)
}

// decodeVerdict reads a verdict map element's data (NFTA_VERDICT_CODE
// and NFTA_VERDICT_CHAIN attributes), which the library leaves raw.
func decodeVerdict(t *testing.T, b []byte) string {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatalf("verdict: %v", err)
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	name := map[expr.VerdictKind]string{expr.VerdictGoto: "goto", expr.VerdictJump: "jump",
		expr.VerdictDrop: "drop", expr.VerdictReturn: "return"}[expr.VerdictKind(code)]
	return strings.TrimSpace(name + " " + chain)
}

// checkMaps compares every set and map of groups with the kernel's.
func checkMaps(t *testing.T, w *Writer, groups map[string]*ruleset.Group) {
	t.Helper()
	kernel, err := w.read.GetSets(w.table)
	if err != nil {
		t.Fatal(err)
	}
	inKernel := map[string]bool{}
	for _, s := range kernel {
		inKernel[s.Name] = true
	}
	wantSets := map[string]bool{}
	for _, g := range groups {
		if g == nil {
			continue
		}
		for _, set := range g.Sets {
			wantSets[set.Name] = true
			if !inKernel[set.Name] {
				t.Errorf("set %s missing from the kernel", set.Name)
				continue
			}
			got, want := elements(t, w, set.Name, set.Key), wantElements(groups, set.Name, set.Key)
			if !slices.Equal(got, want) {
				t.Errorf("set %s:\n got %q\nwant %q", set.Name, got, want)
			}
		}
	}
	for name := range inKernel {
		if !wantSets[name] {
			t.Errorf("unexpected set %s in the kernel", name)
		}
	}
}

// ruleHandles returns the handles of a chain's rules, which change only
// when the rules are rewritten.
func ruleHandles(t *testing.T, w *Writer, chain string) []uint64 {
	t.Helper()
	rules, err := w.read.GetRules(w.table, &nftables.Chain{Name: chain, Table: w.table})
	if err != nil {
		t.Fatalf("rules of %s: %v", chain, err)
	}
	var hs []uint64
	for _, r := range rules {
		hs = append(hs, r.Handle)
	}
	return hs
}

func TestWriterFollowsGroups(t *testing.T) {
	w, list := newWriter(t)
	eps := proxytest.Endpoints(3, 1, "node-a")
	a := proxytest.Service("default", "a", "10.96.0.10", 80, proxytest.Affinity(60))
	b := proxytest.Service("default", "b", "10.96.0.11", 80, proxytest.NodePort(30080), proxytest.ExternalLocal)
	c := proxytest.Service("kube-system", "c", "10.96.0.12", 53)
	groups := map[string]*ruleset.Group{
		"":          ruleset.Skeleton(testNode),
		"default/a": svcGroup(a, proxytest.Slice("default", "a", "a-1", 8080, eps[:2]...)),
		"default/b": svcGroup(b, proxytest.Slice("default", "b", "b-1", 8080, eps[2])),
		"default/c": svcGroup(c),
	}
	// Something an earlier run left behind, to be replaced.
	if err := w.Replace(map[string]*ruleset.Group{"": ruleset.Skeleton(ruleset.Node{}),
		"x": svcGroup(proxytest.Service("default", "x", "10.96.9.9", 80), proxytest.Slice("default", "x", "x", 80, eps[0]))}); err != nil {
		t.Fatal(err)
	}
	if err := w.Replace(groups); err != nil {
		t.Fatal(err)
	}
	diffChains(t, list(), wantChains(groups))
	checkMaps(t, w, groups)

	steps := []struct {
		name    string
		changes map[string]*ruleset.Group
		// untouched chains must keep their rules (same handles).
		untouched []string
	}{
		{
			name: "endpoint added to one service",
			changes: map[string]*ruleset.Group{
				"default/a": svcGroup(a, proxytest.Slice("default", "a", "a-1", 8080, eps...)),
			},
			untouched: []string{"ext-default/b/tcp/http", "svc-default/a/tcp/http", ruleset.ChainServices},
		},
		{
			name: "affinity timeout changed",
			changes: map[string]*ruleset.Group{
				"default/a": svcGroup(proxytest.Service("default", "a", "10.96.0.10", 80, proxytest.Affinity(30)),
					proxytest.Slice("default", "a", "a-1", 8080, eps...)),
			},
			untouched: []string{"ext-default/b/tcp/http"},
		},
		{
			name: "service gains endpoints, another loses all",
			changes: map[string]*ruleset.Group{
				"default/b": svcGroup(b),
				"default/c": svcGroup(c, proxytest.Slice("kube-system", "c", "c-1", 53, eps[0])),
			},
			untouched: []string{"cluster-default/a/tcp/http"},
		},
		{
			name: "ClusterIP moves from a deleted service to a new one",
			changes: map[string]*ruleset.Group{
				"default/c": nil,
				"default/d": svcGroup(proxytest.Service("default", "d", "10.96.0.12", 53),
					proxytest.Slice("default", "d", "d-1", 5353, eps[1])),
			},
			untouched: []string{"cluster-default/a/tcp/http"},
		},
		{
			name: "two services claim one external IP",
			changes: map[string]*ruleset.Group{
				"default/e": svcGroup(proxytest.Service("default", "e", "10.96.0.20", 80, withExternalIP("192.168.50.7")),
					proxytest.Slice("default", "e", "e-1", 80, eps[0])),
				"default/f": svcGroup(proxytest.Service("default", "f", "10.96.0.21", 80, withExternalIP("192.168.50.7")),
					proxytest.Slice("default", "f", "f-1", 80, eps[1])),
			},
		},
		{
			name:    "all services removed",
			changes: map[string]*ruleset.Group{"default/a": nil, "default/b": nil, "default/d": nil, "default/e": nil, "default/f": nil},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := map[string][]uint64{}
			for _, c := range s.untouched {
				before[c] = ruleHandles(t, w, c)
			}
			if err := w.Update(s.changes); err != nil {
				t.Fatal(err)
			}
			for name, g := range s.changes {
				groups[name] = g
			}
			want := maps.Clone(groups)
			// The conflict: f's claim on e's external IP loses.
			if f := want["default/f"]; f != nil {
				f = &ruleset.Group{Chains: f.Chains, Sets: f.Sets}
				for _, e := range groups["default/f"].Elements {
					if e.Key.Addr != netip.MustParseAddr("192.168.50.7") {
						f.Elements = append(f.Elements, e)
					}
				}
				want["default/f"] = f
			}
			diffChains(t, list(), wantChains(want))
			checkMaps(t, w, want)
			for c, hs := range before {
				if got := ruleHandles(t, w, c); !slices.Equal(got, hs) {
					t.Errorf("chain %s was rewritten (rule handles %v, were %v)", c, got, hs)
				}
			}
		})
	}

	if err := w.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.read.ListTableOfFamily(w.table.Name, nftables.TableFamilyIPv4); err == nil {
		t.Fatal("table still there after Delete")
	}
	if err := w.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func withExternalIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = []string{ip} }
}

func TestWriterRejectedBatchChangesNothing(t *testing.T) {
	w, list := newWriter(t)
	good := svcGroup(proxytest.Service("default", "a", "10.96.0.10", 80),
		proxytest.Slice("default", "a", "a-1", 8080, proxytest.Endpoints(2, 1, "node-a")...))
	groups := map[string]*ruleset.Group{"": ruleset.Skeleton(testNode), "default/a": good}
	if err := w.Replace(groups); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bad     *ruleset.Group
		wantErr string
	}{
		{
			name:    "the kernel refuses a jump to a missing chain",
			bad:     &ruleset.Group{Chains: []ruleset.Chain{{Name: "broken", Rules: []ruleset.Rule{{ruleset.Verdict{Kind: ruleset.Jump, Chain: "nowhere"}}}}}},
			wantErr: "add rule: no such file or directory",
		},
		{
			name: "a rule that cannot be encoded is never sent",
			bad: &ruleset.Group{Chains: []ruleset.Chain{{Name: "broken", Rules: []ruleset.Rule{
				{ruleset.DNAT{Proto: ruleset.TCP, Addr: netip.MustParseAddr("fd00::1"), Port: 80}}}}}},
			wantErr: "not IPv4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The bad group rides with a good change, which must not
			// happen either.
			moved := svcGroup(proxytest.Service("default", "a", "10.96.0.10", 80),
				proxytest.Slice("default", "a", "a-1", 8080, proxytest.Endpoints(3, 1, "node-a")...))
			err := w.Update(map[string]*ruleset.Group{"default/a": moved, "default/bad": tt.bad})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
			diffChains(t, list(), wantChains(groups))
			checkMaps(t, w, groups)
			// The writer still works, with nothing left over from the
			// failed batch.
			if err := w.Update(map[string]*ruleset.Group{"default/a": moved}); err != nil {
				t.Fatal(err)
			}
			after := map[string]*ruleset.Group{"": groups[""], "default/a": moved}
			diffChains(t, list(), wantChains(after))
			if err := w.Update(map[string]*ruleset.Group{"default/a": good}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
