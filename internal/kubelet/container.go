package kubelet

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/kubelet/envvars"
	"github.com/skiffhq/skiff/internal/kubelet/volume"
)

// containerConfig is the CRI description of container c's next instance.
func (k *Kubelet) containerConfig(pod *corev1.Pod, c *corev1.Container, attempt uint32, image string, vols map[string]string, podIP string) (*runtimeapi.ContainerConfig, error) {
	env, err := envvars.Container(pod, c, k.envSources(pod, podIP))
	if err != nil {
		return nil, err
	}
	envMap := make(map[string]string, len(env))
	kvs := make([]*runtimeapi.KeyValue, 0, len(env))
	for _, e := range env {
		envMap[e.Name] = e.Value
		kvs = append(kvs, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(e.Value)})
	}
	mounts, err := volume.ContainerMounts(pod, c, vols, envMap)
	if err != nil {
		return nil, err
	}
	extra, termFile, err := k.kubeletMounts(pod, c, attempt, podIP)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, extra...)

	cmd := make([]string, len(c.Command))
	for i, s := range c.Command {
		cmd[i] = envvars.Expand(s, envMap)
	}
	args := make([]string, len(c.Args))
	for i, s := range c.Args {
		args[i] = envvars.Expand(s, envMap)
	}
	annotations := map[string]string{annotationHash: containerHash(c)}
	if termFile != "" {
		annotations[annotationTermFile] = termFile
	}
	cl := map[string]string{
		labelPodName: pod.Name, labelPodNamespace: pod.Namespace, labelPodUID: string(pod.UID),
		labelContainerName: c.Name,
	}
	return &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: attempt},
		Image:       &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: c.Image},
		Command:     cmd,
		Args:        args,
		WorkingDir:  c.WorkingDir,
		Envs:        kvs,
		Mounts:      mounts,
		Labels:      cl,
		Annotations: annotations,
		LogPath:     filepath.Join(c.Name, strconv.Itoa(int(attempt))+".log"),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       k.containerResources(pod, c),
			SecurityContext: containerSecurity(pod, c),
		},
	}, nil
}

// envSources gives the env resolver what it reads: the pod's services
// (and the master service from "default"), config maps, secrets.
func (k *Kubelet) envSources(pod *corev1.Pod, podIP string) envvars.Sources {
	svcs, _ := k.services.Services(pod.Namespace).List(labels.Everything())
	if pod.Namespace != "default" {
		if master, err := k.services.Services("default").Get("kubernetes"); err == nil {
			svcs = append(svcs, master)
		}
	}
	node := k.cfg.NodeIP.String()
	src := envvars.Sources{
		ConfigMap:       func(ns, name string) (*corev1.ConfigMap, error) { return k.configMaps.ConfigMaps(ns).Get(name) },
		Secret:          func(ns, name string) (*corev1.Secret, error) { return k.secrets.Secrets(ns).Get(name) },
		Services:        svcs,
		NodeAllocatable: k.allocatable(),
		HostIP:          node, HostIPs: []string{node},
		PodIP:    podIP,
		NodeName: k.cfg.NodeName,
	}
	if podIP != "" {
		src.PodIPs = []string{podIP}
	}
	return src
}

func (k *Kubelet) allocatable() corev1.ResourceList {
	if n, err := k.nodes.Get(k.cfg.NodeName); err == nil && n.Status.Allocatable != nil {
		return n.Status.Allocatable
	}
	return k.cfg.Machine.Capacity()
}

// kubeletMounts are the files the kubelet itself gives every container:
// /etc/hosts and the termination message file.
func (k *Kubelet) kubeletMounts(pod *corev1.Pod, c *corev1.Container, attempt uint32, podIP string) ([]*runtimeapi.Mount, string, error) {
	var out []*runtimeapi.Mount
	dir := k.podDir(pod)
	if !pod.Spec.HostNetwork && !mountsPath(c, "/etc/hosts") {
		hosts := filepath.Join(dir, "etc-hosts")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, "", fmt.Errorf("pod dir: %w", err)
		}
		if err := writeFileAtomic(hosts, hostsFile(pod, podIP, k.cfg.ClusterDomain), 0o644); err != nil {
			return nil, "", fmt.Errorf("write hosts file: %w", err)
		}
		out = append(out, &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: hosts})
	}
	termFile := ""
	if p := c.TerminationMessagePath; p != "" && !mountsPath(c, p) {
		cdir := filepath.Join(dir, "containers", c.Name)
		if err := os.MkdirAll(cdir, 0o750); err != nil {
			return nil, "", fmt.Errorf("container dir: %w", err)
		}
		termFile = filepath.Join(cdir, strconv.Itoa(int(attempt)))
		if err := os.WriteFile(termFile, nil, 0o666); err != nil {
			return nil, "", fmt.Errorf("termination message file: %w", err)
		}
		// The container may run as any user: let it write its message.
		_ = os.Chmod(termFile, 0o666)
		out = append(out, &runtimeapi.Mount{ContainerPath: p, HostPath: termFile})
	}
	return out, termFile, nil
}

func mountsPath(c *corev1.Container, p string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == p {
			return true
		}
	}
	return false
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// containerHash identifies the container's spec; a change (a new image)
// restarts the container.
func containerHash(c *corev1.Container) string {
	data, _ := json.Marshal(c)
	h := fnv.New32a()
	_, _ = h.Write(data)
	return strconv.FormatUint(uint64(h.Sum32()), 16)
}

// CPU and OOM constants of upstream's cgroup mapping.
const (
	minShares     = 2
	sharesPerCPU  = 1024
	quotaPeriod   = 100000 // 100 ms in µs
	minQuota      = 1000
	guaranteedOOM = -997
	bestEffortOOM = 1000
)

// containerResources maps requests and limits to cgroup settings as
// upstream: requests → cpu shares, limits → cpu quota and memory limit,
// QoS → OOM score.
func (k *Kubelet) containerResources(pod *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{CpuShares: minShares}
	cpuReq := c.Resources.Requests.Cpu().MilliValue()
	if cpuReq == 0 && !c.Resources.Limits.Cpu().IsZero() {
		cpuReq = c.Resources.Limits.Cpu().MilliValue()
	}
	if s := cpuReq * sharesPerCPU / 1000; s > minShares {
		r.CpuShares = s
	}
	if lim := c.Resources.Limits.Cpu().MilliValue(); lim > 0 {
		r.CpuPeriod = quotaPeriod
		r.CpuQuota = max(lim*quotaPeriod/1000, minQuota)
	}
	if lim := c.Resources.Limits.Memory().Value(); lim > 0 {
		r.MemoryLimitInBytes = lim
	}
	switch qosClass(pod) {
	case corev1.PodQOSGuaranteed:
		r.OomScoreAdj = guaranteedOOM
	case corev1.PodQOSBestEffort:
		r.OomScoreAdj = bestEffortOOM
	default:
		r.OomScoreAdj = 1000 - 1000*c.Resources.Requests.Memory().Value()/max(k.memoryCapacity(), 1)
		r.OomScoreAdj = min(max(r.OomScoreAdj, 2), 999)
	}
	return r
}

func (k *Kubelet) memoryCapacity() int64 {
	capacity := k.cfg.Machine.Capacity()
	return capacity.Memory().Value()
}

// Paths upstream's runtime masks or makes read-only in unprivileged
// containers, so that they cannot read kernel internals or change sysctls.
var (
	defaultMaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// containerSecurity merges the pod's and the container's security
// contexts, the container's winning.
func containerSecurity(pod *corev1.Pod, c *corev1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *csc.RunAsUser}
		}
		if csc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *csc.RunAsGroup}
		}
		if csc.ReadOnlyRootFilesystem != nil {
			sc.ReadonlyRootfs = *csc.ReadOnlyRootFilesystem
		}
		if csc.Privileged != nil {
			sc.Privileged = *csc.Privileged
		}
		if csc.AllowPrivilegeEscalation != nil {
			sc.NoNewPrivs = !*csc.AllowPrivilegeEscalation
		}
		if caps := csc.Capabilities; caps != nil {
			sc.Capabilities = &runtimeapi.Capability{}
			for _, a := range caps.Add {
				sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
			}
			for _, d := range caps.Drop {
				sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
			}
		}
	}
	if !sc.Privileged {
		sc.MaskedPaths = defaultMaskedPaths
		sc.ReadonlyPaths = defaultReadonlyPaths
	}
	return sc
}
