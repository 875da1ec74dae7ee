package network

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestSplitSaveLine(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: `-A POSTROUTING -s 10.42.0.3/32 -j CNI-0123`, want: []string{"-A", "POSTROUTING", "-s", "10.42.0.3/32", "-j", "CNI-0123"}},
		{
			in:   `-A CNI-x -m comment --comment "name: \"skiff\" id: \"ab cd\"" -j ACCEPT`,
			want: []string{"-A", "CNI-x", "-m", "comment", "--comment", `name: "skiff" id: "ab cd"`, "-j", "ACCEPT"},
		},
		{in: `-A X --comment ""`, want: []string{"-A", "X", "--comment", ""}},
		{in: `-A X  -j  Y`, want: []string{"-A", "X", "-j", "Y"}},
		{in: `-A X --comment "open`, wantErr: true},
		{in: `-A`, wantErr: true},
	} {
		got, err := splitSaveLine(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("splitSaveLine(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestRemoveBridgeMasquerade sets up, in a fresh netns, what the bridge
// plugin's ipMasq left for two skiff pods (one chain already without its
// jump) next to another network's chain, a portmap chain and a rule of
// someone else's, and checks that only skiff's masquerade goes.
func TestRemoveBridgeMasquerade(t *testing.T) {
	ns := newNetns(t)
	const (
		ours1  = "CNI-0123456789abcdef01234567"
		ours2  = "CNI-89abcdef0123456789abcdef"
		theirs = "CNI-fedcba9876543210fedcba98"
	)
	comment := func(network, id string) []string {
		return []string{"-m", "comment", "--comment", `name: "` + network + `" id: "` + id + `"`}
	}
	setup := [][]string{
		{"-N", ours1}, {"-N", ours2}, {"-N", theirs}, {"-N", "CNI-HOSTPORT-MASQ"},
		append(append([]string{"-A", ours1, "-d", "10.42.0.0/24"}, comment("skiff", "pod1")...), "-j", "ACCEPT"),
		append(append([]string{"-A", ours1, "!", "-d", "224.0.0.0/4"}, comment("skiff", "pod1")...), "-j", "MASQUERADE"),
		append(append([]string{"-A", "POSTROUTING", "-s", "10.42.0.3"}, comment("skiff", "pod1")...), "-j", ours1),
		append(append([]string{"-A", ours2, "!", "-d", "224.0.0.0/4"}, comment("skiff", "pod2")...), "-j", "MASQUERADE"),
		append(append([]string{"-A", theirs, "!", "-d", "224.0.0.0/4"}, comment("other", "pod3")...), "-j", "MASQUERADE"),
		append(append([]string{"-A", "POSTROUTING", "-s", "10.88.0.3"}, comment("other", "pod3")...), "-j", theirs),
		{"-A", "CNI-HOSTPORT-MASQ", "-j", "MASQUERADE"},
		{"-A", "POSTROUTING", "-s", "192.168.7.0/24", "-j", "MASQUERADE"},
	}
	save := func() string {
		var out []byte
		inNetns(t, ns, func() error {
			var err error
			out, err = exec.Command("iptables-save", "-t", "nat").Output()
			return err
		})
		return string(out)
	}
	inNetns(t, ns, func() error {
		for _, args := range setup {
			if out, err := exec.Command("iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables %q: %v: %s", args, err, out)
			}
		}
		return nil
	})
	for round, want := range []int{2, 0} {
		var n int
		inNetns(t, ns, func() error {
			var err error
			n, err = RemoveBridgeMasquerade(context.Background(), "skiff")
			return err
		})
		if n != want {
			t.Errorf("round %d: removed %d chains, want %d", round, n, want)
		}
	}
	after := save()
	for _, gone := range []string{ours1, ours2, "10.42.0.3", `\"skiff\"`} {
		if strings.Contains(after, gone) {
			t.Errorf("%s still there:\n%s", gone, after)
		}
	}
	for _, kept := range []string{":" + theirs, "-j " + theirs, "CNI-HOSTPORT-MASQ -j MASQUERADE", "-s 192.168.7.0/24 -j MASQUERADE"} {
		if !strings.Contains(after, kept) {
			t.Errorf("%q removed:\n%s", kept, after)
		}
	}
}
