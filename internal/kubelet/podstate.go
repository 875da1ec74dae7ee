package kubelet

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels and annotations the kubelet puts on sandboxes and containers, as
// upstream's, so that what runs can be traced back to its pod after a
// kubelet restart and by tools such as crictl.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	// annotationHash holds a hash of the container's spec: a container
	// whose spec changed (a new image) is restarted.
	annotationHash = "io.kubernetes.container.hash"
	// annotationTermPath records where the termination message file is
	// on the host.
	annotationTermFile = "skiff.io/termination-message-file"
)

// podState is what runs for one pod, as the runtime reports it.
type podState struct {
	// sandboxes, newest first.
	sandboxes []*runtimeapi.PodSandbox
	// containers of every sandbox, newest first.
	containers []*runtimeapi.ContainerStatus
	// ip is the ready sandbox's pod IP.
	ip string
}

// readySandbox returns the newest sandbox if it is ready.
func (s *podState) readySandbox() *runtimeapi.PodSandbox {
	if len(s.sandboxes) > 0 && s.sandboxes[0].State == runtimeapi.PodSandboxState_SANDBOX_READY {
		return s.sandboxes[0]
	}
	return nil
}

// instances returns the named container's instances, newest first;
// sandboxID, when set, keeps only that sandbox's.
func (s *podState) instances(name, sandboxID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.containers {
		if c.Metadata.GetName() == name && (sandboxID == "" || c.Labels[labelSandboxID] == sandboxID) {
			out = append(out, c)
		}
	}
	return out
}

// latest returns the named container's newest instance in any sandbox.
func (s *podState) latest(name string) *runtimeapi.ContainerStatus {
	for _, c := range s.containers {
		if c.Metadata.GetName() == name {
			return c
		}
	}
	return nil
}

// running lists the containers still running.
func (s *podState) running() []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.containers {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			out = append(out, c)
		}
	}
	return out
}

// labelSandboxID is not a runtime label: podState copies each container's
// sandbox ID into its status labels so that lookups stay in one map.
const labelSandboxID = "skiff.io/sandbox-id"

// statusCache keeps container statuses that cannot change any more
// (exited) or whose listed state did not change, so that a sync costs one
// list call per pod instead of one status call per container.
type statusCache struct {
	mu sync.Mutex
	m  map[string]*runtimeapi.ContainerStatus
	ip map[string]string // sandbox ID → pod IP
	// stopped holds the sandboxes this kubelet stopped, which need no
	// second StopPodSandbox.
	stopped map[string]bool
}

func newStatusCache() *statusCache {
	return &statusCache{m: map[string]*runtimeapi.ContainerStatus{}, ip: map[string]string{}, stopped: map[string]bool{}}
}

// forgetSandbox drops a removed sandbox from the cache.
func (k *Kubelet) forgetSandbox(id string) {
	k.statuses.mu.Lock()
	delete(k.statuses.ip, id)
	delete(k.statuses.stopped, id)
	k.statuses.mu.Unlock()
}

// podState lists the pod's sandboxes and containers.
func (k *Kubelet) podState(ctx context.Context, uid types.UID) (*podState, error) {
	sel := map[string]string{labelPodUID: string(uid)}
	sbs, err := k.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	cs, err := k.cfg.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	st := &podState{sandboxes: sbs.Items}
	slices.SortFunc(st.sandboxes, func(a, b *runtimeapi.PodSandbox) int {
		return cmpNewest(a.CreatedAt, b.CreatedAt, a.Metadata.GetAttempt(), b.Metadata.GetAttempt())
	})
	for _, c := range cs.Containers {
		s, err := k.containerStatus(ctx, c)
		if err != nil {
			continue // removed in between
		}
		st.containers = append(st.containers, s)
	}
	slices.SortFunc(st.containers, func(a, b *runtimeapi.ContainerStatus) int {
		return cmpNewest(a.CreatedAt, b.CreatedAt, a.Metadata.GetAttempt(), b.Metadata.GetAttempt())
	})
	if sb := st.readySandbox(); sb != nil {
		st.ip = k.sandboxIP(ctx, sb.Id)
	}
	return st, nil
}

// cmpNewest orders newest first: by attempt, then creation time.
func cmpNewest(aCreated, bCreated int64, aAttempt, bAttempt uint32) int {
	if aAttempt != bAttempt {
		return int(bAttempt) - int(aAttempt)
	}
	switch {
	case aCreated > bCreated:
		return -1
	case aCreated < bCreated:
		return 1
	}
	return 0
}

// containerStatus returns c's full status, from the cache when c's state
// has not changed since it was read.
func (k *Kubelet) containerStatus(ctx context.Context, c *runtimeapi.Container) (*runtimeapi.ContainerStatus, error) {
	k.statuses.mu.Lock()
	cached := k.statuses.m[c.Id]
	k.statuses.mu.Unlock()
	if cached != nil && cached.State == c.State {
		return cached, nil
	}
	resp, err := k.cfg.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
	if err != nil {
		return nil, err
	}
	s := resp.Status
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[labelSandboxID] = c.PodSandboxId
	k.statuses.mu.Lock()
	k.statuses.m[c.Id] = s
	k.statuses.mu.Unlock()
	return s, nil
}

// forgetContainer drops a removed container from the cache.
func (k *Kubelet) forgetContainer(id string) {
	k.statuses.mu.Lock()
	delete(k.statuses.m, id)
	k.statuses.mu.Unlock()
}

// sandboxIP returns the sandbox's pod IP; it never changes, so it is
// asked for once.
func (k *Kubelet) sandboxIP(ctx context.Context, id string) string {
	k.statuses.mu.Lock()
	ip, ok := k.statuses.ip[id]
	k.statuses.mu.Unlock()
	if ok {
		return ip
	}
	resp, err := k.cfg.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return ""
	}
	ip = resp.GetStatus().GetNetwork().GetIp()
	if resp.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
		ip = k.cfg.NodeIP.String()
	}
	k.statuses.mu.Lock()
	k.statuses.ip[id] = ip
	k.statuses.mu.Unlock()
	return ip
}
