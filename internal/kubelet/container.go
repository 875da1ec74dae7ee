package kubelet

import (
	"context"
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
			SecurityContext: containerSecurity(pod, c, k.seccompDir()),
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

// seccompDir holds the node's seccomp profiles, which Localhost profiles
// name relative to it, as upstream's <root-dir>/seccomp.
func (k *Kubelet) seccompDir() string { return filepath.Join(k.cfg.RootDir, "seccomp") }

// seccompProfile maps a seccomp profile to the CRI's; nil leaves the
// runtime's default, unconfined, as upstream does without SeccompDefault.
func seccompProfile(p *corev1.SeccompProfile, dir string) *runtimeapi.SecurityProfile {
	if p == nil {
		return nil
	}
	switch p.Type {
	case corev1.SeccompProfileTypeRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	case corev1.SeccompProfileTypeLocalhost:
		if p.LocalhostProfile == nil {
			return nil
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: filepath.Join(dir, *p.LocalhostProfile)}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
}

// containerSecurity merges the pod's and the container's security
// contexts, the container's winning.
func containerSecurity(pod *corev1.Pod, c *corev1.Container, seccompDir string) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaceOptions(pod)}
	var seccomp *corev1.SeccompProfile
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
		seccomp = psc.SeccompProfile
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.SeccompProfile != nil {
			seccomp = csc.SeccompProfile
		}
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
		sc.Seccomp = seccompProfile(seccomp, seccompDir)
	}
	return sc
}

// verifyNonRoot refuses to start a container that asks to run as non-root
// but would run as root, as upstream does: runAsUser 0, or no runAsUser
// and an image whose user is root, unset (root too) or a name that cannot
// be checked.
func (k *Kubelet) verifyNonRoot(ctx context.Context, pod *corev1.Pod, c *corev1.Container, image string) error {
	nonRoot := false
	var uid *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		uid = psc.RunAsUser
	}
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsNonRoot != nil {
			nonRoot = *csc.RunAsNonRoot
		}
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
	}
	switch {
	case !nonRoot:
		return nil
	case uid != nil && *uid == 0:
		return fmt.Errorf("container %s must run as non-root but its runAsUser is 0", c.Name)
	case uid != nil:
		return nil
	}
	st, err := k.cfg.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return fmt.Errorf("container %s must run as non-root: read the user of image %s: %w", c.Name, image, err)
	}
	img := st.GetImage()
	switch {
	case img.GetUid() != nil && img.GetUid().GetValue() != 0:
		return nil
	case img.GetUid() == nil && img.GetUsername() != "":
		return fmt.Errorf("container %s must run as non-root but its image's user %q is a name, not a number, so it cannot be checked; set runAsUser", c.Name, img.GetUsername())
	}
	return fmt.Errorf("container %s must run as non-root but its image runs as root; set runAsUser", c.Name)
}
