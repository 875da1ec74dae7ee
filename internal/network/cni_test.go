package network

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// lookup walks a decoded JSON document along path; ints index arrays.
func lookup(t *testing.T, doc any, path ...any) any {
	t.Helper()
	cur := doc
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not an object", path, cur)
			}
			v, ok := m[k]
			if !ok {
				return nil
			}
			cur = v
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at %v: no element %d in %v", path, k, cur)
			}
			cur = a[k]
		}
	}
	return cur
}

func TestWriteCNIConfigContent(t *testing.T) {
	type want struct {
		path  []any
		value any // nil means absent
	}
	bridge := func(p ...any) []any { return append([]any{"plugins", 0}, p...) }
	portmap := func(p ...any) []any { return append([]any{"plugins", 1}, p...) }
	common := []want{
		{[]any{"cniVersion"}, "1.0.0"},
		{bridge("type"), "bridge"},
		{bridge("isGateway"), true},
		{bridge("ipMasq"), false},
		{bridge("hairpinMode"), true},
		{bridge("ipam", "type"), "host-local"},
		{portmap("type"), "portmap"},
		{portmap("capabilities", "portMappings"), true},
		{portmap("snat"), true},
	}
	tests := []struct {
		name    string
		cfg     CNIConfig
		want    []want
		wantErr bool
	}{
		{
			name: "defaults",
			cfg:  CNIConfig{PodCIDR: "10.244.1.0/24"},
			want: []want{
				{[]any{"name"}, "skiff"},
				{bridge("bridge"), "skiff0"},
				{bridge("mtu"), nil},
				{bridge("ipam", "ranges", 0, 0, "subnet"), "10.244.1.0/24"},
				{bridge("ipam", "routes", 0, "dst"), "0.0.0.0/0"},
				{bridge("ipam", "dataDir"), nil},
			},
		},
		{
			name: "everything set",
			cfg: CNIConfig{
				NetworkName: "hollow", BridgeName: "sk-hollow3", PodCIDR: "10.244.3.0/24",
				DataDir: "/var/lib/skiff/n3/cni", MTU: 1450,
			},
			want: []want{
				{[]any{"name"}, "hollow"},
				{bridge("bridge"), "sk-hollow3"},
				{bridge("mtu"), 1450.0},
				{bridge("ipam", "dataDir"), "/var/lib/skiff/n3/cni"},
			},
		},
		{
			name: "host address in CIDR is canonicalised",
			cfg:  CNIConfig{PodCIDR: "10.244.7.5/24"},
			want: []want{{bridge("ipam", "ranges", 0, 0, "subnet"), "10.244.7.0/24"}},
		},
		{
			name: "IPv6 pod CIDR routes ::/0",
			cfg:  CNIConfig{PodCIDR: "fd00:10:244:1::/64"},
			want: []want{
				{bridge("ipam", "ranges", 0, 0, "subnet"), "fd00:10:244:1::/64"},
				{bridge("ipam", "routes", 0, "dst"), "::/0"},
			},
		},
		{name: "missing PodCIDR", cfg: CNIConfig{}, wantErr: true},
		{name: "bad PodCIDR", cfg: CNIConfig{PodCIDR: "10.244.1.0"}, wantErr: true},
		{name: "bridge name too long", cfg: CNIConfig{PodCIDR: "10.0.0.0/24", BridgeName: "a-very-long-bridge"}, wantErr: true},
		{name: "negative MTU", cfg: CNIConfig{PodCIDR: "10.0.0.0/24", MTU: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "net.d")
			changed, err := WriteCNIConfig(dir, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("WriteCNIConfig error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if _, statErr := os.Stat(filepath.Join(dir, ConfListName)); statErr == nil {
					t.Errorf("invalid config was written")
				}
				return
			}
			if !changed {
				t.Errorf("first write reported changed=false")
			}
			data, err := os.ReadFile(filepath.Join(dir, ConfListName))
			if err != nil {
				t.Fatal(err)
			}
			var doc any
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatalf("config is not JSON: %v\n%s", err, data)
			}
			if n := len(lookup(t, doc, "plugins").([]any)); n != 2 {
				t.Errorf("got %d plugins, want 2 (bridge, portmap)", n)
			}
			for _, w := range append(append([]want{}, common...), tt.want...) {
				if got := lookup(t, doc, w.path...); !reflect.DeepEqual(got, w.value) {
					t.Errorf("%v = %#v, want %#v", w.path, got, w.value)
				}
			}
		})
	}
}

func TestWriteCNIConfigChanged(t *testing.T) {
	dir := t.TempDir()
	a := CNIConfig{PodCIDR: "10.244.1.0/24"}
	b := CNIConfig{PodCIDR: "10.244.2.0/24"}
	steps := []struct {
		name        string
		cfg         CNIConfig
		wantChanged bool
	}{
		{"first write", a, true},
		{"same config again", a, false},
		{"new pod CIDR", b, true},
		{"back to the first", a, true},
		{"unchanged once more", a, false},
	}
	path := filepath.Join(dir, ConfListName)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before, _ := os.Stat(path)
			changed, err := WriteCNIConfig(dir, s.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if changed != s.wantChanged {
				t.Errorf("changed = %v, want %v", changed, s.wantChanged)
			}
			after, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			// An unchanged config must not even be replaced: the file is
			// the same inode, so a watcher sees no event.
			if !s.wantChanged && !os.SameFile(before, after) {
				t.Errorf("unchanged config was rewritten")
			}
			if after.Mode().Perm() != 0o644 {
				t.Errorf("mode = %v, want 0644", after.Mode().Perm())
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("dir holds %d entries, want only %s (temp file left behind?)", len(entries), ConfListName)
			}
		})
	}
}
