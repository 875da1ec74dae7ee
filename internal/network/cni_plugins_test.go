package network

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// cniBinDir is where Debian installs the CNI plugins.
const cniBinDir = "/usr/lib/cni"

// runPlugin executes one CNI plugin in netns host with conf on stdin.
func runPlugin(t *testing.T, host netns.NsHandle, command, podNetns string, conf map[string]any) []byte {
	t.Helper()
	stdin, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	inNetns(t, host, func() error {
		cmd := exec.Command(filepath.Join(cniBinDir, conf["type"].(string)))
		cmd.Env = []string{
			"CNI_COMMAND=" + command,
			"CNI_CONTAINERID=skiff-test",
			"CNI_NETNS=" + podNetns,
			"CNI_IFNAME=eth0",
			"CNI_PATH=" + cniBinDir,
			"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		}
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err = cmd.Output()
		if err != nil {
			return fmt.Errorf("%s %s: %v\nstdout: %s\nstderr: %s", conf["type"], command, err, out, stderr.Bytes())
		}
		return nil
	})
	return out
}

// TestCNIConfigWithPlugins runs the written conflist through Debian's
// real bridge, host-local and portmap plugins, the way the runtime does
// (each plugin gets the list's name and version, and the previous
// plugin's result), between two throwaway namespaces standing in for
// the node and a pod.
func TestCNIConfigWithPlugins(t *testing.T) {
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			t.Skipf("CNI plugin %s not installed: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skipf("iptables not installed: %v", err)
	}
	dir := t.TempDir()
	if _, err := WriteCNIConfig(dir, CNIConfig{
		BridgeName: "sktest0", PodCIDR: "10.244.9.0/24", DataDir: filepath.Join(dir, "ipam"), MTU: 1400,
	}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ConfListName))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}

	node := newNetns(t)
	pod := newNetns(t)
	podPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(pod))

	var prev any
	results := make([]any, len(list.Plugins))
	for i, p := range list.Plugins {
		p["name"], p["cniVersion"] = list.Name, list.CNIVersion
		if prev != nil {
			p["prevResult"] = prev
		}
		if p["type"] == "portmap" {
			p["runtimeConfig"] = map[string]any{"portMappings": []map[string]any{
				{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
			}}
		}
		out := runPlugin(t, node, "ADD", podPath, p)
		if err := json.Unmarshal(out, &prev); err != nil {
			t.Fatalf("%s result: %v: %s", p["type"], err, out)
		}
		results[i] = prev
	}
	t.Cleanup(func() {
		for i := len(list.Plugins) - 1; i >= 0; i-- {
			p := list.Plugins[i]
			p["prevResult"] = results[i]
			runPlugin(t, node, "DEL", podPath, p)
		}
	})

	hn, err := netlink.NewHandleAt(node)
	if err != nil {
		t.Fatal(err)
	}
	defer hn.Close()
	hp, err := netlink.NewHandleAt(pod)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()

	br, err := hn.LinkByName("sktest0")
	if err != nil {
		t.Fatalf("bridge sktest0 not created on the node: %v", err)
	}
	if got := br.Attrs().MTU; got != 1400 {
		t.Errorf("bridge MTU = %d, want 1400", got)
	}
	if !hasAddr(t, hn, br, "10.244.9.1/24") {
		t.Errorf("bridge lacks gateway address 10.244.9.1/24")
	}
	eth0, err := hp.LinkByName("eth0")
	if err != nil {
		t.Fatalf("pod has no eth0: %v", err)
	}
	if !hasAddr(t, hp, eth0, "10.244.9.2/24") {
		t.Errorf("pod eth0 lacks the first pod address 10.244.9.2/24")
	}
	routes, err := hp.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	gw := ""
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			gw = r.Gw.String()
		}
	}
	if gw != "10.244.9.1" {
		t.Errorf("pod default route via %q, want 10.244.9.1 (routes %v)", gw, routes)
	}
	if _, err := os.Stat(filepath.Join(dir, "ipam", "skiff", "10.244.9.2")); err != nil {
		t.Errorf("host-local did not record the allocation in DataDir: %v", err)
	}
}

func hasAddr(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) bool {
	t.Helper()
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == cidr {
			return true
		}
	}
	return false
}
