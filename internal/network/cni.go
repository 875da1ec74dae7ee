// Package network configures a node's pod network: the CNI configuration
// the container runtime uses to wire each pod into the node's bridge, and
// the routes that carry traffic for other nodes' pod CIDRs to those nodes.
//
// Pods on a node share one Linux bridge and get addresses from the node's
// PodCIDR (host-local IPAM); reaching a pod on another node is a plain
// route "that node's PodCIDR via that node's address", which works while
// the nodes share an L2 segment and needs no overlay.
package network

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// Defaults for CNIConfig fields left empty.
const (
	DefaultNetworkName = "skiff"
	DefaultBridgeName  = "skiff0"
)

// ConfListName is the file WriteCNIConfig writes. The runtime loads the
// first configuration in its directory in lexical order, so the "10-"
// prefix leaves room for a deliberate override to sort first.
const ConfListName = "10-skiff.conflist"

// CNIVersion is the CNI spec version of the configuration. Debian's
// plugins (1.1.1) and containerd 1.6's libcni both speak 1.0.0.
const CNIVersion = "1.0.0"

// maxIfNameLen is the longest Linux interface name (IFNAMSIZ minus NUL).
const maxIfNameLen = 15

// CNIConfig describes the node's pod network.
type CNIConfig struct {
	// NetworkName names the CNI network (default "skiff"); host-local keeps
	// its allocations under DataDir/NetworkName.
	NetworkName string
	// BridgeName is the node's pod bridge (default "skiff0"). Two agents on
	// one host (hollow or test nodes) need distinct bridges.
	BridgeName string
	// PodCIDR is the node's pod subnet, IPv4 or IPv6. Required.
	PodCIDR string
	// DataDir is where host-local records allocated addresses; empty means
	// the plugin's default, /var/lib/cni/networks. Agents sharing a host
	// need distinct ones or they hand out each other's addresses.
	DataDir string
	// MTU of the bridge and pod interfaces; 0 leaves the plugin's default.
	MTU int
}

// WriteCNIConfig writes dir/ConfListName for c, creating dir if needed.
// It rewrites the file only when its content would change, and does so
// atomically, because the runtime may read it at any moment: a pod created
// while the file is half-written would fail its network setup.
func WriteCNIConfig(dir string, c CNIConfig) (changed bool, err error) {
	data, err := renderCNIConfig(c)
	if err != nil {
		return false, err
	}
	path := filepath.Join(dir, ConfListName)
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("read CNI config: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create CNI config dir: %w", err)
	}
	if err := writeFileAtomic(path, data, 0o644); err != nil {
		return false, fmt.Errorf("write CNI config: %w", err)
	}
	return true, nil
}

// The types below mirror the JSON the bridge, host-local and portmap
// plugins read; field order is the file's order.
type (
	confList struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []any  `json:"plugins"`
	}
	bridgeConf struct {
		Type        string   `json:"type"`
		Bridge      string   `json:"bridge"`
		IsGateway   bool     `json:"isGateway"`
		IPMasq      bool     `json:"ipMasq"`
		HairpinMode bool     `json:"hairpinMode"`
		MTU         int      `json:"mtu,omitempty"`
		IPAM        ipamConf `json:"ipam"`
	}
	ipamConf struct {
		Type    string        `json:"type"`
		Ranges  [][]ipamRange `json:"ranges"`
		Routes  []ipamRoute   `json:"routes"`
		DataDir string        `json:"dataDir,omitempty"`
	}
	ipamRange struct {
		Subnet string `json:"subnet"`
	}
	ipamRoute struct {
		Dst string `json:"dst"`
	}
	portmapConf struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
		SNAT         bool            `json:"snat"`
	}
)

// renderCNIConfig returns the conflist for c, validated and with defaults.
func renderCNIConfig(c CNIConfig) ([]byte, error) {
	if c.NetworkName == "" {
		c.NetworkName = DefaultNetworkName
	}
	if c.BridgeName == "" {
		c.BridgeName = DefaultBridgeName
	}
	if len(c.BridgeName) > maxIfNameLen {
		return nil, fmt.Errorf("CNI config: bridge name %q longer than %d bytes", c.BridgeName, maxIfNameLen)
	}
	if c.MTU < 0 {
		return nil, fmt.Errorf("CNI config: negative MTU %d", c.MTU)
	}
	if c.PodCIDR == "" {
		return nil, errors.New("CNI config: PodCIDR is required")
	}
	_, subnet, err := net.ParseCIDR(c.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("CNI config: PodCIDR: %w", err)
	}
	defaultRoute := "0.0.0.0/0"
	if subnet.IP.To4() == nil {
		defaultRoute = "::/0"
	}
	list := confList{
		CNIVersion: CNIVersion,
		Name:       c.NetworkName,
		Plugins: []any{
			bridgeConf{
				Type:   "bridge",
				Bridge: c.BridgeName,
				// The bridge holds the subnet's gateway address, so pods
				// reach the host and, through its routes, other nodes.
				IsGateway: true,
				// No per-pod masquerade: it would hide pod addresses from
				// pods on other nodes. SyncMasquerade covers the node's
				// pods with one rule for traffic leaving the pod network.
				IPMasq: false,
				// Hairpin lets a pod reach itself through a Service address.
				HairpinMode: true,
				MTU:         c.MTU,
				IPAM: ipamConf{
					Type: "host-local",
					// subnet.String() is the canonical network address,
					// which host-local requires ("10.244.1.0/24", not ".5/24").
					Ranges:  [][]ipamRange{{{Subnet: subnet.String()}}},
					Routes:  []ipamRoute{{Dst: defaultRoute}},
					DataDir: c.DataDir,
				},
			},
			portmapConf{
				Type: "portmap",
				// The runtime passes a pod's hostPorts only to plugins that
				// declare this capability.
				Capabilities: map[string]bool{"portMappings": true},
				// SNAT makes hostPort traffic from the node itself work.
				SNAT: true,
			},
		},
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	return append(data, '\n'), nil
}

// writeFileAtomic replaces path with data so that readers see either the
// old or the new content, never a prefix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if tmp != "" {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	tmp = ""
	return nil
}
