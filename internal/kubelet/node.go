package kubelet

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Node status timing, as upstream's kubelet: status is computed every
// 10 s but posted only when it changed or a minute has passed, because
// the Lease, not the Node object, is the heartbeat.
const (
	nodeStatusUpdateFrequency = 10 * time.Second
	nodeStatusReportFrequency = time.Minute
)

// registerNode creates this kubelet's Node, or takes over the one a
// previous run left, bringing its labels and taints up to date.
func (k *Kubelet) registerNode(ctx context.Context) error {
	want := k.initialNode()
	nodes := k.cfg.Client.CoreV1().Nodes()
	for {
		_, err := nodes.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
		}
		cur, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // deleted in between: create again
		}
		if err != nil {
			return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
		}
		updated := cur.DeepCopy()
		if updated.Labels == nil {
			updated.Labels = map[string]string{}
		}
		maps.Copy(updated.Labels, want.Labels)
		for _, t := range want.Spec.Taints {
			if !slices.ContainsFunc(updated.Spec.Taints, func(o corev1.Taint) bool { return o.MatchTaint(&t) }) {
				updated.Spec.Taints = append(updated.Spec.Taints, t)
			}
		}
		if apiequality.Semantic.DeepEqual(cur, updated) {
			return nil
		}
		if _, err := nodes.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				continue
			}
			return fmt.Errorf("register node %s: %w", k.cfg.NodeName, err)
		}
		return nil
	}
}

// initialNode is the Node this kubelet registers.
func (k *Kubelet) initialNode() *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   k.cfg.NodeName,
		corev1.LabelOSStable:   goruntime.GOOS,
		corev1.LabelArchStable: goruntime.GOARCH,
	}
	maps.Copy(labels, k.cfg.Labels)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: slices.Clone(k.cfg.Taints)},
	}
}

// syncNodeStatus computes the node's status and posts it when it changed
// or the report period passed.
func (k *Kubelet) syncNodeStatus(ctx context.Context) error {
	nodes := k.cfg.Client.CoreV1().Nodes()
	node, err := k.nodes.Get(k.cfg.NodeName)
	if err != nil {
		node, err = nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		// Someone deleted our Node: register it again, as upstream does.
		if err := k.registerNode(ctx); err != nil {
			return err
		}
		node, err = nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("get node %s: %w", k.cfg.NodeName, err)
	}
	k.podCIDRChanged(ctx, node.Spec.PodCIDR)
	status := k.nodeStatus(ctx, node)
	now := k.clock.Now()
	if apiequality.Semantic.DeepEqual(withoutHeartbeats(node.Status), withoutHeartbeats(*status)) &&
		now.Sub(k.lastStatusReport) < nodeStatusReportFrequency {
		return nil
	}
	updated := node.DeepCopy()
	updated.Status = *status
	if _, err := nodes.UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update node %s status: %w", k.cfg.NodeName, err)
	}
	k.lastStatusReport = now
	return nil
}

// withoutHeartbeats blanks the fields that change on every computation, so
// that two statuses compare equal when nothing but time moved.
func withoutHeartbeats(s corev1.NodeStatus) corev1.NodeStatus {
	s = *s.DeepCopy()
	for i := range s.Conditions {
		s.Conditions[i].LastHeartbeatTime = metav1.Time{}
	}
	return s
}

// nodeStatus computes the node's status from the machine and the runtime.
func (k *Kubelet) nodeStatus(ctx context.Context, node *corev1.Node) *corev1.NodeStatus {
	capacity := k.cfg.Machine.Capacity()
	allocatable := capacity.DeepCopy()
	if mem, ok := allocatable[corev1.ResourceMemory]; ok {
		// Upstream subtracts the hard eviction threshold.
		mem.Sub(*resource.NewQuantity(memoryAvailableThreshold, resource.BinarySI))
		allocatable[corev1.ResourceMemory] = mem
	}
	info := k.cfg.Machine.Info()
	info.ContainerRuntimeVersion = k.cfg.RuntimeVersion
	info.KubeletVersion = k.cfg.Version
	info.KubeProxyVersion = ""

	addresses := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.cfg.NodeIP.String()}}
	if hn, err := os.Hostname(); err == nil && k.cfg.Hostname == "" {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: hn})
	} else if k.cfg.Hostname != "" {
		addresses = append(addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: k.cfg.Hostname})
	}

	now := metav1.NewTime(k.clock.Now())
	memP, diskP, pidP := k.cfg.Machine.Pressure()
	readyStatus, readyReason, readyMsg := corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"
	if err := k.runtimeReady(ctx); err != nil {
		readyStatus, readyReason, readyMsg = corev1.ConditionFalse, "KubeletNotReady", err.Error()
	}
	conds := []corev1.NodeCondition{
		pressureCondition(corev1.NodeMemoryPressure, memP, "KubeletHasSufficientMemory", "KubeletHasInsufficientMemory", "memory"),
		pressureCondition(corev1.NodeDiskPressure, diskP, "KubeletHasNoDiskPressure", "KubeletHasDiskPressure", "disk"),
		pressureCondition(corev1.NodePIDPressure, pidP, "KubeletHasSufficientPID", "KubeletHasInsufficientPID", "PID"),
		{Type: corev1.NodeReady, Status: readyStatus, Reason: readyReason, Message: readyMsg},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		for _, old := range node.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	return &corev1.NodeStatus{
		Capacity:        capacity,
		Allocatable:     allocatable,
		Conditions:      conds,
		Addresses:       addresses,
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(k.cfg.KubeletPort)}},
		NodeInfo:        info,
		Images:          k.nodeImages(ctx),
	}
}

func pressureCondition(t corev1.NodeConditionType, pressure bool, okReason, badReason, what string) corev1.NodeCondition {
	if pressure {
		return corev1.NodeCondition{Type: t, Status: corev1.ConditionTrue, Reason: badReason, Message: "kubelet has " + what + " pressure"}
	}
	return corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: "kubelet has sufficient " + what + " available"}
}

// runtimeReady asks the runtime whether it and its network are up: the
// node is NotReady with the runtime's own reason when not.
func (k *Kubelet) runtimeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := k.cfg.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return fmt.Errorf("container runtime is down: %w", err)
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
			return fmt.Errorf("container runtime status check: %s=false reason:%s message:%s", c.Type, c.Reason, c.Message)
		}
	}
	return nil
}

// maxNodeImages bounds the images listed in node status, as upstream's
// default (50), largest first.
const maxNodeImages = 50

func (k *Kubelet) nodeImages(ctx context.Context) []corev1.ContainerImage {
	resp, err := k.cfg.Images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil
	}
	imgs := resp.GetImages()
	slices.SortStableFunc(imgs, func(a, b *runtimeapi.Image) int { return int(b.Size - a.Size) })
	var out []corev1.ContainerImage
	for _, img := range imgs {
		names := append(slices.Clone(img.RepoTags), img.RepoDigests...)
		if len(names) == 0 {
			continue
		}
		out = append(out, corev1.ContainerImage{Names: names, SizeBytes: int64(img.Size)})
		if len(out) == maxNodeImages {
			break
		}
	}
	return out
}

// podCIDRChanged tells the network hook about the node's pod CIDR once
// the node IPAM controller has assigned it, and again if it changes.
func (k *Kubelet) podCIDRChanged(ctx context.Context, cidr string) {
	if cidr == "" || cidr == k.podCIDR {
		return
	}
	if _, _, err := net.ParseCIDR(cidr); err != nil {
		k.log.Warn("node has an invalid pod CIDR", "podCIDR", cidr, "err", err)
		return
	}
	if k.cfg.OnPodCIDR != nil {
		if err := k.cfg.OnPodCIDR(ctx, cidr); err != nil {
			k.log.Warn("configure pod network", "podCIDR", cidr, "err", err)
			return
		}
	}
	// Tell the runtime too, as upstream does: runtimes that allocate pod
	// IPs themselves (the simulated one) take them from this range.
	// containerd answers Unimplemented here and reads the CNI config.
	_, err := k.cfg.Runtime.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}},
	})
	if err != nil && status.Code(err) != codes.Unimplemented {
		k.log.Warn("tell the runtime the pod CIDR", "podCIDR", cidr, "err", err)
	}
	k.podCIDR = cidr
	k.log.Info("pod network configured", "podCIDR", cidr)
}
