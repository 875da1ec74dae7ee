package cli

import (
	"slices"
	"testing"

	"github.com/skiffhq/skiff/internal/agent"
)

func TestNodeServices(t *testing.T) {
	tests := []struct {
		name       string
		clusterDNS []string
		disable    []string
		wantProxy  bool
		wantDNS    []string
	}{
		{"proxy and cluster DNS by default", nil, nil, true, []string{"10.43.0.10"}},
		{"--cluster-dns wins", []string{"192.0.2.53"}, nil, true, []string{"192.0.2.53"}},
		{"--disable proxy keeps the node's resolvers", nil, []string{"proxy"}, false, nil},
		{"other components leave the proxy on", nil, []string{"dns"}, true, []string{"10.43.0.10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := agent.Config{ClusterDNS: tt.clusterDNS}
			nodeServices(&cfg, "10.42.0.0/16", tt.disable)
			if cfg.DisableProxy == tt.wantProxy {
				t.Errorf("DisableProxy = %v, want proxy %v", cfg.DisableProxy, tt.wantProxy)
			}
			if !slices.Equal(cfg.ClusterDNS, tt.wantDNS) {
				t.Errorf("ClusterDNS = %v, want %v", cfg.ClusterDNS, tt.wantDNS)
			}
			if cfg.ClusterCIDR != "10.42.0.0/16" {
				t.Errorf("ClusterCIDR = %q", cfg.ClusterCIDR)
			}
		})
	}
}
