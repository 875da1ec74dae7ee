package kubelet

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// relist lists every container and sandbox the runtime has, wakes the
// workers of pods whose containers changed state (containerd 1.6 has no
// event stream, so this is how an exit is noticed), and hands what runs
// for pods the API no longer has to workers that remove it.
func (k *Kubelet) relist(ctx context.Context) {
	cs, err := k.cfg.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("relist containers", "err", err)
		}
		return
	}
	sbs, err := k.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	changed := map[types.UID]bool{}
	now := make(map[string]runtimeapi.ContainerState, len(cs.Containers))
	for _, c := range cs.Containers {
		now[c.Id] = c.State
		if old, ok := k.relistSeen[c.Id]; !ok || old != c.State {
			changed[types.UID(c.Labels[labelPodUID])] = true
		}
	}
	for id := range k.relistSeen {
		if _, ok := now[id]; !ok {
			k.forgetContainer(id)
		}
	}
	k.relistSeen = now
	for uid := range changed {
		k.wakePod(uid)
	}

	// Orphans: sandboxes of pods that no longer exist.
	known := map[types.UID]bool{}
	if pods, err := k.pods.List(labels.Everything()); err == nil {
		for _, p := range pods {
			known[p.UID] = true
		}
	}
	for _, sb := range sbs.Items {
		uid := types.UID(sb.Labels[labelPodUID])
		if uid == "" || known[uid] {
			continue
		}
		k.workersMu.Lock()
		_, busy := k.workers[uid]
		k.workersMu.Unlock()
		if busy {
			continue
		}
		orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			UID: uid, Name: sb.Metadata.GetName(), Namespace: sb.Metadata.GetNamespace(), Labels: sb.Labels,
		}}
		k.log.Info("removing pod that no longer exists", "pod", orphan.Namespace+"/"+orphan.Name, "uid", uid)
		k.worker(ctx, orphan).gone()
	}
}
