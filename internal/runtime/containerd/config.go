package containerd

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// disabledPlugins are containerd plugins the node agent never uses. Not
// loading them saves memory and start time, and spares logs full of
// "snapshotter not supported" noise on hosts without btrfs or zfs.
var disabledPlugins = []string{
	"io.containerd.internal.v1.tracing",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	// Not the legacy io.containerd.runtime.v1.linux: unused, but 1.6's
	// tasks service, and with it the CRI plugin, fails to load without it.
	// Restarts containers carrying restart labels; the kubelet restarts ours.
	"io.containerd.internal.v1.restart",
}

// configParams is everything config.toml depends on, resolved to
// absolute paths, so rendering is a pure function.
type configParams struct {
	Root, State      string
	Address, TTRPC   string
	RuncRoot, OptDir string
	SandboxImage     string
	CNIBinDir        string
	CNIConfDir       string
	CertsDir         string
	DisableAppArmor  bool
}

// renderConfig returns a containerd 1.6 (config version 2) configuration.
// It sets everything the agent depends on explicitly rather than relying
// on containerd's defaults, which distributions patch.
func renderConfig(p configParams) string {
	const cri = `plugins."io.containerd.grpc.v1.cri"`
	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("  ", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w(0, "# Written by skiff at every start; edits are lost.")
	w(0, "version = 2")
	w(0, "root = %s", quote(p.Root))
	w(0, "state = %s", quote(p.State))
	w(0, "disabled_plugins = %s", quoteList(disabledPlugins))
	w(0, "")
	w(0, "[grpc]")
	w(1, "address = %s", quote(p.Address))
	w(1, "max_recv_message_size = %d", 16<<20)
	w(1, "max_send_message_size = %d", 16<<20)
	w(0, "")
	w(0, "[ttrpc]")
	w(1, "address = %s", quote(p.TTRPC))
	w(0, "")
	// An empty address keeps the debug socket and the Prometheus
	// endpoint off: nothing scrapes them, and each costs a listener.
	w(0, "[debug]")
	w(1, `address = ""`)
	w(1, `level = "info"`)
	w(0, "")
	w(0, "[metrics]")
	w(1, `address = ""`)
	w(0, "")
	w(0, "[plugins]")
	w(1, `[plugins."io.containerd.internal.v1.opt"]`)
	w(2, "path = %s", quote(p.OptDir))
	w(1, `[plugins."io.containerd.monitor.v1.cgroups"]`)
	w(2, "no_prometheus = true")
	w(1, "[%s]", cri)
	w(2, "sandbox_image = %s", quote(p.SandboxImage))
	// Clamps containers' oom_score_adj to containerd's own. Sandboxes ask
	// for -998; without CAP_SYS_RESOURCE (sandboxed or nested hosts) the
	// kernel refuses any lowering and runc fails every sandbox with
	// "can't get final child's PID from pipe: EOF".
	w(2, "restrict_oom_score_adj = true")
	// Keeps pod network namespaces under this instance's state dir, so
	// two agents on one host never share /var/run/netns.
	w(2, "netns_mounts_under_state_dir = true")
	// Streaming (exec, attach, port-forward) is proxied by the kubelet;
	// the runtime's server only needs loopback and any free port.
	w(2, `stream_server_address = "127.0.0.1"`)
	w(2, `stream_server_port = "0"`)
	w(2, "enable_tls_streaming = false")
	w(2, "disable_tcp_service = true")
	// containerd's profile needs apparmor_parser to load; where the
	// kernel has AppArmor but the parser is missing, every container
	// would fail. Hosts without AppArmor ignore the setting.
	w(2, "disable_apparmor = %t", p.DisableAppArmor)
	w(2, "enable_selinux = false")
	w(2, "[%s.containerd]", cri)
	w(3, `snapshotter = "overlayfs"`)
	w(3, `default_runtime_name = "runc"`)
	w(3, "[%s.containerd.runtimes.runc]", cri)
	w(4, `runtime_type = "io.containerd.runc.v2"`)
	w(4, "[%s.containerd.runtimes.runc.options]", cri)
	w(5, "Root = %s", quote(p.RuncRoot))
	// cgroupfs: pod cgroups are plain paths like /kubepods/besteffort/pod<uid>
	// and there may be no systemd to delegate to.
	w(5, "SystemdCgroup = false")
	w(2, "[%s.cni]", cri)
	w(3, "bin_dir = %s", quote(p.CNIBinDir))
	w(3, "conf_dir = %s", quote(p.CNIConfDir))
	w(3, "max_conf_num = 1")
	// Registry hosts come only from hosts.toml files: containerd refuses
	// to combine config_path with the older registry.mirrors tables, and
	// then silently runs without the CRI plugin.
	w(2, "[%s.registry]", cri)
	w(3, "config_path = %s", quote(p.CertsDir))
	return b.String()
}

// upstream returns the registry a host name stands for when no mirror
// answers. Docker Hub is the one whose API host differs from its name.
func upstream(host string, insecure bool) string {
	if insecure {
		return "http://" + host
	}
	if host == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + host
}

// DefaultHost is the Mirrors key whose mirrors apply to every registry
// without a configuration of its own (containerd's certs.d/_default): the
// agent's image mirror goes there, so imported images are found whatever
// registry their names say.
const DefaultHost = "_default"

// renderHosts returns host → hosts.toml content for every registry host
// that needs one: mirrored hosts and insecure ones.
func renderHosts(mirrors map[string][]string, insecure []string) (map[string]string, error) {
	isInsecure := func(host string) bool { return slices.Contains(insecure, host) }
	hosts := make(map[string]string)
	for host, endpoints := range mirrors {
		if err := checkHost(host); err != nil {
			return nil, err
		}
		var b strings.Builder
		if host != DefaultHost {
			// The default config has no upstream of its own: after its
			// mirrors containerd tries the requested registry itself.
			fmt.Fprintf(&b, "server = %s\n", quote(upstream(host, isInsecure(host))))
		}
		for _, ep := range endpoints {
			u, err := url.Parse(ep)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("mirror %q for %s: want an http:// or https:// URL", ep, host)
			}
			fmt.Fprintf(&b, "\n[host.%s]\n", quote(ep))
			b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
			// Plain http needs no verification; an https mirror is
			// trusted blindly only when its host is listed insecure.
			if u.Scheme == "http" || isInsecure(u.Host) || isInsecure(u.Hostname()) {
				b.WriteString("  skip_verify = true\n")
			}
		}
		if host != DefaultHost && isInsecure(host) {
			b.WriteString(unverifiedHTTPS(host))
		}
		hosts[host] = b.String()
	}
	for _, host := range insecure {
		if err := checkHost(host); err != nil {
			return nil, err
		}
		if _, ok := hosts[host]; ok {
			continue
		}
		hosts[host] = fmt.Sprintf("server = %s\n", quote(upstream(host, true))) + unverifiedHTTPS(host)
	}
	return hosts, nil
}

// unverifiedHTTPS is the host entry that makes an insecure registry's
// https tried, unverified, before its plain http server. It is needed
// even for a registry that speaks only http: containerd 1.6 rejects a
// hosts.toml without any host entry ("invalid `host` tree") and then
// falls back to verified https, which fails.
func unverifiedHTTPS(host string) string {
	return fmt.Sprintf("\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n", quote("https://"+host))
}

// checkHost rejects registry hosts that cannot name a directory under
// certs.d, so a typo cannot write files elsewhere.
func checkHost(host string) error {
	u, err := url.Parse("//" + host)
	if err != nil || u.Host != host || host == "" || strings.Contains(host, "..") {
		return fmt.Errorf("registry host %q: want host or host:port", host)
	}
	return nil
}

// quote renders s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
