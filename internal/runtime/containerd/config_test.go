package containerd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parseTOML reads the subset of TOML renderConfig writes: [table]
// headers and key = value lines, returned as table → key → raw value.
func parseTOML(t *testing.T, text string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{"": {}}
	table := ""
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			table = strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")
			if _, dup := out[table]; dup {
				t.Fatalf("line %d: table [%s] defined twice", n+1, table)
			}
			out[table] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok {
				t.Fatalf("line %d: not key = value: %q", n+1, line)
			}
			if _, dup := out[table][k]; dup {
				t.Fatalf("line %d: key %s set twice in [%s]", n+1, k, table)
			}
			out[table][k] = v
		}
	}
	return out
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{
		Dir:          dir,
		Binary:       "/bin/true", // not started here
		SandboxImage: "skiff.local/pause:3.10",
		CNIBinDirs:   []string{filepath.Join(dir, "missing"), dir},
		Mirrors:      map[string][]string{"skiff.local": {"http://127.0.0.1:5123"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A host directory from an earlier configuration must disappear.
	stale := filepath.Join(dir, "certs.d", "old.example")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.prepare(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := parseTOML(t, string(data))

	const cri = `plugins."io.containerd.grpc.v1.cri"`
	q := quote
	tests := []struct {
		table, key, want string
	}{
		{"", "version", "2"},
		{"", "root", q(dir + "/root")},
		{"", "state", q(dir + "/state")},
		{"grpc", "address", q(dir + "/containerd.sock")},
		{"grpc", "max_recv_message_size", "16777216"},
		{"ttrpc", "address", q(dir + "/containerd.sock.ttrpc")},
		{"metrics", "address", `""`},
		{"debug", "address", `""`},
		{`plugins."io.containerd.internal.v1.opt"`, "path", q(dir + "/opt")},
		{`plugins."io.containerd.monitor.v1.cgroups"`, "no_prometheus", "true"},
		{cri, "sandbox_image", q("skiff.local/pause:3.10")},
		{cri, "restrict_oom_score_adj", "true"},
		{cri, "netns_mounts_under_state_dir", "true"},
		{cri, "stream_server_address", q("127.0.0.1")},
		{cri, "stream_server_port", q("0")},
		{cri, "disable_apparmor", strconv.FormatBool(appArmorUnusable())},
		{cri + ".containerd", "snapshotter", q("overlayfs")},
		{cri + ".containerd.runtimes.runc", "runtime_type", q("io.containerd.runc.v2")},
		{cri + ".containerd.runtimes.runc.options", "Root", q(dir + "/runc")},
		{cri + ".containerd.runtimes.runc.options", "SystemdCgroup", "false"},
		{cri + ".cni", "bin_dir", q(dir)}, // the first existing one
		{cri + ".cni", "conf_dir", q(dir + "/cni/net.d")},
		{cri + ".cni", "max_conf_num", "1"},
		{cri + ".registry", "config_path", q(dir + "/certs.d")},
	}
	for _, tt := range tests {
		t.Run(tt.table+"/"+tt.key, func(t *testing.T) {
			got, ok := conf[tt.table][tt.key]
			if !ok {
				t.Fatalf("[%s] %s missing", tt.table, tt.key)
			}
			if got != tt.want {
				t.Errorf("[%s] %s = %s, want %s", tt.table, tt.key, got, tt.want)
			}
		})
	}

	t.Run("disabled plugins", func(t *testing.T) {
		got := conf[""]["disabled_plugins"]
		for _, p := range []string{"tracing", "aufs", "btrfs", "zfs", "devmapper"} {
			if !strings.Contains(got, p) {
				t.Errorf("disabled_plugins = %s, want it to include %s", got, p)
			}
		}
		if strings.Contains(got, "overlayfs") || strings.Contains(got, "grpc.v1.cri") {
			t.Errorf("disabled_plugins = %s disables something we need", got)
		}
	})
	t.Run("no legacy registry settings", func(t *testing.T) {
		for table := range conf {
			if strings.HasPrefix(table, cri+".registry.") {
				t.Errorf("config has [%s]; with config_path set, containerd drops the CRI plugin", table)
			}
		}
	})
	t.Run("hosts files", func(t *testing.T) {
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Errorf("stale host dir %s still there (err %v)", stale, err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "certs.d", "skiff.local", "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), `[host."http://127.0.0.1:5123"]`) {
			t.Errorf("hosts.toml lacks the mirror:\n%s", got)
		}
	})
	t.Run("directories", func(t *testing.T) {
		for _, p := range []string{d.CNIConfDir(), d.CNIDataDir(), dir + "/root", dir + "/state", dir + "/runc"} {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				t.Errorf("%s: not a directory (%v)", p, err)
			}
		}
		if got, want := d.Endpoint(), "unix://"+dir+"/containerd.sock"; got != want {
			t.Errorf("Endpoint() = %s, want %s", got, want)
		}
	})
}

func TestRenderHosts(t *testing.T) {
	tests := []struct {
		name     string
		mirrors  map[string][]string
		insecure []string
		want     map[string]string
		wantErr  bool
	}{
		{
			name:    "http mirror",
			mirrors: map[string][]string{"skiff.local": {"http://127.0.0.1:5123"}},
			want: map[string]string{"skiff.local": `server = "https://skiff.local"

[host."http://127.0.0.1:5123"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`},
		},
		{
			name:    "docker hub with two mirrors, https one verified",
			mirrors: map[string][]string{"docker.io": {"https://mirror.example", "http://10.0.0.1:5000"}},
			want: map[string]string{"docker.io": `server = "https://registry-1.docker.io"

[host."https://mirror.example"]
  capabilities = ["pull", "resolve"]

[host."http://10.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`},
		},
		{
			name:     "https mirror on an insecure host skips verification",
			mirrors:  map[string][]string{"quay.io": {"https://cache.lan:8443"}},
			insecure: []string{"cache.lan:8443"},
			want: map[string]string{
				"quay.io": `server = "https://quay.io"

[host."https://cache.lan:8443"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`,
				"cache.lan:8443": `server = "http://cache.lan:8443"

[host."https://cache.lan:8443"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`,
			},
		},
		{
			name:     "insecure registry alone",
			insecure: []string{"registry.lan:5000"},
			want: map[string]string{"registry.lan:5000": `server = "http://registry.lan:5000"

[host."https://registry.lan:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`},
		},
		{
			name:     "insecure mirrored host pulls upstream over http",
			mirrors:  map[string][]string{"registry.lan": {"http://127.0.0.1:1"}},
			insecure: []string{"registry.lan"},
			want: map[string]string{"registry.lan": `server = "http://registry.lan"

[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host."https://registry.lan"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`},
		},
		{name: "nothing", want: map[string]string{}},
		{name: "path in host", insecure: []string{"../../etc"}, wantErr: true},
		{name: "empty host", mirrors: map[string][]string{"": {"http://x"}}, wantErr: true},
		{name: "mirror without scheme", mirrors: map[string][]string{"skiff.local": {"127.0.0.1:5000"}}, wantErr: true},
		{name: "mirror with other scheme", mirrors: map[string][]string{"skiff.local": {"ftp://127.0.0.1"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderHosts(tt.mirrors, tt.insecure)
			if (err != nil) != tt.wantErr {
				t.Fatalf("renderHosts error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(got) != len(tt.want) {
				t.Errorf("got hosts %v, want %v", keys(got), keys(tt.want))
			}
			for host, want := range tt.want {
				if got[host] != want {
					t.Errorf("hosts.toml for %s:\n%s\nwant:\n%s", host, got[host], want)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNewPaths(t *testing.T) {
	long := "/var/lib/skiff/" + strings.Repeat("very-long-directory-name/", 4) + "containerd"
	tests := []struct {
		name        string
		dir         string
		wantSock    string
		wantSockDir bool
	}{
		{name: "short dir keeps sockets inside", dir: "/var/lib/skiff/containerd", wantSock: "/var/lib/skiff/containerd/containerd.sock"},
		{name: "long dir moves sockets to /run", dir: long, wantSockDir: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPaths(tt.dir)
			if tt.wantSock != "" && p.sock != tt.wantSock {
				t.Errorf("sock = %s, want %s", p.sock, tt.wantSock)
			}
			if (p.sockDir != "") != tt.wantSockDir {
				t.Errorf("sockDir = %q, wantSockDir %v", p.sockDir, tt.wantSockDir)
			}
			if tt.wantSockDir && !strings.HasPrefix(p.sock, "/run/skiff-") {
				t.Errorf("sock = %s, want it under /run/skiff-*", p.sock)
			}
			if len(p.ttrpc) > maxSockPath {
				t.Errorf("ttrpc socket path %s is %d bytes, over %d", p.ttrpc, len(p.ttrpc), maxSockPath)
			}
			if again := newPaths(tt.dir); again.sock != p.sock {
				t.Errorf("socket path not stable: %s then %s", p.sock, again.sock)
			}
		})
	}
	if a, b := newPaths(long+"1"), newPaths(long+"2"); a.sock == b.sock {
		t.Errorf("two long dirs share socket %s", a.sock)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"tab\there", `"tab\u0009here"`},
		{"ünïcode", `"ünïcode"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := quote(tt.in); got != tt.want {
				t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
