package kubelet

import (
	"context"
	"strings"

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
	// Sandboxes count too: a sandbox whose pause process died turns
	// NOTREADY while its containers may run on, and the pod must get a
	// new one. A container or sandbox that vanished (removed behind our
	// back) changes its pod as well.
	changed := map[types.UID]bool{}
	now := make(map[string]relistEntry, len(cs.Containers)+len(sbs.Items))
	for _, c := range cs.Containers {
		now[c.Id] = relistEntry{uid: types.UID(c.Labels[labelPodUID]), state: int32(c.State)}
	}
	for _, sb := range sbs.Items {
		now[sb.Id] = relistEntry{uid: types.UID(sb.Labels[labelPodUID]), state: int32(sb.State), sandbox: true}
	}
	for id, e := range now {
		if old, ok := k.relistSeen[id]; !ok || old != e {
			changed[e.uid] = true
		}
	}
	for id, old := range k.relistSeen {
		if _, ok := now[id]; !ok {
			changed[old.uid] = true
			if old.sandbox {
				k.forgetSandbox(id)
			} else {
				k.forgetContainer(id)
			}
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
		name, ns := sb.Metadata.GetName(), sb.Metadata.GetNamespace()
		if known[uid] || !pathElement(string(uid)) || !pathElement(name) || !pathElement(ns) {
			continue // names that are no path element are not ours to clean up after
		}
		orphan := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Name: name, Namespace: ns, Labels: sb.Labels}}
		if k.adoptOrphan(ctx, orphan) {
			k.log.Info("removing pod that no longer exists", "pod", orphan.Namespace+"/"+orphan.Name, "uid", uid)
		}
	}
}

// relistEntry is what the relist remembers of a container or sandbox.
type relistEntry struct {
	uid     types.UID
	state   int32
	sandbox bool
}

// pathElement reports whether a pod UID, name or namespace read from the
// runtime can name the per-pod directories and cgroups removed with it:
// one path element, never "." or "..".
func pathElement(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}
