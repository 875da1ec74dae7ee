package kubelet

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandboxConfig is the CRI description of the pod's sandbox: the pause
// container holding the pod's namespaces, network and cgroup.
func (k *Kubelet) sandboxConfig(pod *corev1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	dns, err := k.dnsConfig(pod)
	if err != nil {
		return nil, err
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		Hostname:     podHostname(pod),
		LogDirectory: k.podLogDir(pod),
		DnsConfig:    dns,
		PortMappings: portMappings(pod),
		Labels:       podLabels(pod),
		Annotations:  maps.Clone(pod.Annotations),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: k.podCgroup(pod),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: namespaceOptions(pod),
				Privileged:       anyPrivileged(pod),
			},
		},
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		sc := cfg.Linux.SecurityContext
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = slices.Clone(psc.SupplementalGroups)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		if !sc.Privileged {
			sc.Seccomp = seccompProfile(psc.SeccompProfile, k.seccompDir())
		}
		if len(psc.Sysctls) > 0 {
			cfg.Linux.Sysctls = map[string]string{}
			for _, s := range psc.Sysctls {
				cfg.Linux.Sysctls[s.Name] = s.Value
			}
		}
	}
	if pod.Spec.HostNetwork {
		cfg.Hostname = ""
	}
	return cfg, nil
}

// podLogDir is where the runtime writes the pod's container logs, named
// as upstream so log shippers find them.
func (k *Kubelet) podLogDir(pod *corev1.Pod) string {
	return filepath.Join(k.cfg.LogDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}

// podDir holds the kubelet's own files for the pod.
func (k *Kubelet) podDir(pod *corev1.Pod) string {
	return filepath.Join(k.cfg.RootDir, "pods", string(pod.UID))
}

func podLabels(pod *corev1.Pod) map[string]string {
	l := maps.Clone(pod.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[labelPodName] = pod.Name
	l[labelPodNamespace] = pod.Namespace
	l[labelPodUID] = string(pod.UID)
	return l
}

// podHostname is the pod's hostname: spec.hostname or the pod name, cut
// to a DNS label as upstream does.
func podHostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func portMappings(pod *corev1.Pod) []*runtimeapi.PortMapping {
	var out []*runtimeapi.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case corev1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case corev1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			out = append(out, &runtimeapi.PortMapping{Protocol: proto, ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return out
}

func namespaceOptions(pod *corev1.Pod) *runtimeapi.NamespaceOption {
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
	if pod.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostPID {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return ns
}

func anyPrivileged(pod *corev1.Pod) bool {
	for _, c := range allContainers(pod) {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			return true
		}
	}
	return false
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// hostResolvConf is where the node's own resolver settings come from, for
// dnsPolicy Default and as the base search path of ClusterFirst.
var hostResolvConf = "/etc/resolv.conf"

// dnsConfig is the pod's resolv.conf as its dnsPolicy asks.
func (k *Kubelet) dnsConfig(pod *corev1.Pod) (*runtimeapi.DNSConfig, error) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault // upstream: ClusterFirst means Default on the host network
	}
	if (policy == corev1.DNSClusterFirst || policy == corev1.DNSClusterFirstWithHostNet) && len(k.cfg.ClusterDNS) == 0 {
		policy = corev1.DNSDefault // no cluster DNS configured: fall back to the node's
	}
	host, err := readResolvConf(hostResolvConf)
	if err != nil {
		return nil, err
	}
	var cfg *runtimeapi.DNSConfig
	switch policy {
	case corev1.DNSNone:
		cfg = &runtimeapi.DNSConfig{}
	case corev1.DNSDefault:
		cfg = host
	default:
		d := k.cfg.ClusterDomain
		cfg = &runtimeapi.DNSConfig{
			Servers:  slices.Clone(k.cfg.ClusterDNS),
			Searches: append([]string{pod.Namespace + ".svc." + d, "svc." + d, d}, host.Searches...),
			Options:  []string{"ndots:5"},
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		cfg.Servers = append(cfg.Servers, dc.Nameservers...)
		cfg.Searches = append(cfg.Searches, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			cfg.Options = slices.DeleteFunc(cfg.Options, func(s string) bool { return strings.SplitN(s, ":", 2)[0] == o.Name })
			cfg.Options = append(cfg.Options, opt)
		}
	}
	cfg.Searches = dedupe(cfg.Searches)
	if len(cfg.Searches) > 32 {
		cfg.Searches = cfg.Searches[:32]
	}
	return cfg, nil
}

func readResolvConf(path string) (*runtimeapi.DNSConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return &runtimeapi.DNSConfig{}, nil
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	cfg := &runtimeapi.DNSConfig{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "nameserver":
			cfg.Servers = append(cfg.Servers, f[1])
		case "search", "domain":
			cfg.Searches = append(cfg.Searches, f[1:]...)
		case "options":
			cfg.Options = append(cfg.Options, f[1:]...)
		}
	}
	return cfg, nil
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// hostsFile is the pod's /etc/hosts, as upstream's kubelet writes it: the
// usual loopback entries, the pod's own name on its IP, and host aliases.
func hostsFile(pod *corev1.Pod, podIP, clusterDomain string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if podIP != "" {
		h := podHostname(pod)
		if sub := pod.Spec.Subdomain; sub != "" {
			fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", podIP, h, sub, pod.Namespace, clusterDomain, h)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", podIP, h)
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}
