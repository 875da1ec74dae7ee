package network

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
)

// nftList prints the masquerade table of family ("ip", "ip6") in ns as nft
// does, or "" when there is none.
func nftList(t *testing.T, ns netns.NsHandle, family string) string {
	t.Helper()
	var out []byte
	inNetns(t, ns, func() error {
		out, _ = exec.Command("nft", "list", "table", family, MasqueradeTable).Output()
		return nil
	})
	return string(out)
}

func TestSyncMasquerade(t *testing.T) {
	for _, tc := range []struct {
		name                string
		pod, cluster        string // "" for the zero Prefix
		family              string
		want                string // the rule, as nft lists it
		wantErr             string
		previous, previous2 string // synced before, to be replaced
	}{
		{
			name: "pod traffic leaving the cluster network", pod: "10.42.1.0/24", cluster: "10.42.0.0/16", family: "ip",
			want: "ip saddr 10.42.1.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
		},
		{
			name: "host bits of the CIDRs dropped", pod: "10.42.1.7/24", cluster: "10.42.3.1/16", family: "ip",
			want: "ip saddr 10.42.1.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
		},
		{
			name: "no cluster CIDR: only the node's own pods unmasqueraded", pod: "10.42.1.0/24", family: "ip",
			want: "ip saddr 10.42.1.0/24 ip daddr != 10.42.1.0/24 ip daddr != 224.0.0.0/4 masquerade fully-random",
		},
		{
			name: "a changed pod CIDR replaces the rule", pod: "10.42.2.0/24", cluster: "10.42.0.0/16", family: "ip",
			previous: "10.42.1.0/24", previous2: "10.42.0.0/16",
			want: "ip saddr 10.42.2.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
		},
		{
			name: "IPv6", pod: "fd00:42:0:1::/64", cluster: "fd00:42::/48", family: "ip6",
			want: "ip6 saddr fd00:42:0:1::/64 ip6 daddr != fd00:42::/48 ip6 daddr != ff00::/8 masquerade fully-random",
		},
		{name: "no pod CIDR", cluster: "10.42.0.0/16", wantErr: "pod CIDR is required"},
		{name: "mixed families", pod: "10.42.1.0/24", cluster: "fd00:42::/48", wantErr: "different IP families"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t)
			conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
			if err != nil {
				t.Fatal(err)
			}
			prefix := func(s string) netip.Prefix {
				if s == "" {
					return netip.Prefix{}
				}
				return netip.MustParsePrefix(s)
			}
			if tc.previous != "" {
				if err := SyncMasquerade(conn, prefix(tc.previous), prefix(tc.previous2)); err != nil {
					t.Fatal(err)
				}
			}
			err = SyncMasquerade(conn, prefix(tc.pod), prefix(tc.cluster))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				for _, f := range []string{"ip", "ip6"} {
					if out := nftList(t, ns, f); out != "" {
						t.Errorf("bad input left a table:\n%s", out)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out := nftList(t, ns, tc.family)
			if !strings.Contains(out, "type nat hook postrouting priority srcnat") {
				t.Errorf("no source-NAT postrouting chain:\n%s", out)
			}
			var rules []string
			for _, l := range strings.Split(out, "\n") {
				if l = strings.TrimSpace(l); strings.HasSuffix(l, "fully-random") {
					rules = append(rules, l)
				}
			}
			if len(rules) != 1 || rules[0] != tc.want {
				t.Errorf("rules %q, want exactly %q\n%s", rules, tc.want, out)
			}
		})
	}
}

// TestEnsureMasquerade: a resync restores a missing table and leaves an
// existing one as it is.
func TestEnsureMasquerade(t *testing.T) {
	ns := newNetns(t)
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	pods, cluster := netip.MustParsePrefix("10.42.1.0/24"), netip.MustParsePrefix("10.42.0.0/16")
	other := netip.MustParsePrefix("10.42.9.0/24")
	steps := []struct {
		name string
		do   func() error
		want string // the pod CIDR in the rule; "" for no table
	}{
		{"missing: written", func() error { return EnsureMasquerade(conn, pods, cluster) }, "10.42.1.0/24"},
		{"changed by a sync", func() error { return SyncMasquerade(conn, other, cluster) }, "10.42.9.0/24"},
		{"present: left alone", func() error { return EnsureMasquerade(conn, pods, cluster) }, "10.42.9.0/24"},
		{"flushed away", func() error {
			var out []byte
			var err error
			inNetns(t, ns, func() error {
				out, err = exec.Command("nft", "flush", "ruleset").CombinedOutput()
				return nil
			})
			if err != nil {
				return fmt.Errorf("nft flush ruleset: %v: %s", err, out)
			}
			return nil
		}, ""},
		{"restored", func() error { return EnsureMasquerade(conn, pods, cluster) }, "10.42.1.0/24"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		out := nftList(t, ns, "ip")
		if s.want == "" {
			if out != "" {
				t.Fatalf("%s: table still there:\n%s", s.name, out)
			}
			continue
		}
		if !strings.Contains(out, "ip saddr "+s.want+" ip daddr != 10.42.0.0/16") {
			t.Fatalf("%s: want the rule for %s:\n%s", s.name, s.want, out)
		}
	}
}
