package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// startSetsControlPlane starts a control plane without the scheduler and
// the node lifecycle controller: the fake kubelet binds pods itself, and
// its hand-made nodes send no heartbeats a lifecycle controller would
// want, so neither may move pods or taint nodes behind the test's back.
func startSetsControlPlane(t *testing.T) *testutil.ControlPlane {
	t.Helper()
	return testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.Disable = append(cfg.Disable, "scheduler")
		cfg.DisableControllers = append(cfg.DisableControllers, "nodelifecycle")
	})
}

// podEvent is one change a fake kubelet saw, in watch order.
type podEvent struct {
	typ         string // "add", "update", "delete"
	name        string
	uid         string
	node        string
	image       string
	ready       bool
	terminating bool
}

// setsKubelet stands in for the kubelets and the scheduler of every node
// in one namespace: it binds pending daemon pods to the node their
// matchFields affinity names (or to defaultNode), reports bound pods
// Running and Ready while ready is set, and finishes graceful deletions.
// It records every pod change in the order the watch delivered them, so
// tests can check what happened before what.
type setsKubelet struct {
	t           *testing.T
	client      kubernetes.Interface
	ns          string
	defaultNode string
	ready       atomic.Bool
	podIPs      atomic.Int32

	mu     sync.Mutex
	events []podEvent
}

func startSetsKubelet(t *testing.T, c kubernetes.Interface, ns, defaultNode string) *setsKubelet {
	t.Helper()
	k := &setsKubelet{t: t, client: c, ns: ns, defaultNode: defaultNode}
	k.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.handle(ctx, "add", obj) },
		UpdateFunc: func(_, obj any) { k.handle(ctx, "update", obj) },
		DeleteFunc: func(obj any) { k.handle(ctx, "delete", obj) },
	})
	if err != nil {
		t.Fatalf("kubelet: %v", err)
	}
	f.Start(ctx.Done())
	t.Cleanup(func() { cancel(); f.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatalf("kubelet: pod cache did not sync")
	}
	return k
}

func (k *setsKubelet) handle(ctx context.Context, typ string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	k.events = append(k.events, podEvent{
		typ: typ, name: pod.Name, uid: string(pod.UID), node: podNode(pod), image: pod.Spec.Containers[0].Image,
		ready: podReady(pod), terminating: pod.DeletionTimestamp != nil,
	})
	k.mu.Unlock()
	if typ == "delete" {
		return
	}
	pods := k.client.CoreV1().Pods(pod.Namespace)
	switch {
	case pod.DeletionTimestamp != nil:
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		k.check(err, "delete %s", pod.Name)
	case pod.Spec.NodeName == "":
		node := podNode(pod)
		if node == "" {
			node = k.defaultNode
		}
		if node == "" {
			return
		}
		err := pods.Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		k.check(err, "bind %s", pod.Name)
	case k.ready.Load() && !podReady(pod):
		up := pod.DeepCopy()
		now := metav1.Now()
		up.Status.Phase = corev1.PodRunning
		up.Status.PodIP = fmt.Sprintf("10.42.0.%d", k.podIPs.Add(1)%250+2)
		up.Status.StartTime = &now
		up.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		_, err := pods.UpdateStatus(ctx, up, metav1.UpdateOptions{})
		k.check(err, "update status of %s", pod.Name)
	}
}

// check reports unexpected errors; races with the controller (the pod is
// already gone, or changed since this copy) are normal.
func (k *setsKubelet) check(err error, what string, args ...any) {
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) || errors.Is(err, context.Canceled) {
		return
	}
	k.t.Logf("kubelet: %s: %v", fmt.Sprintf(what, args...), err)
}

// setReady turns reporting pods ready on or off. Turning it on catches up
// on pods that are waiting.
func (k *setsKubelet) setReady(ctx context.Context, on bool) {
	k.ready.Store(on)
	if !on {
		return
	}
	list, err := k.client.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		k.t.Fatalf("list pods: %v", err)
	}
	for i := range list.Items {
		k.handle(ctx, "update", &list.Items[i])
	}
}

// log returns a copy of the events so far.
func (k *setsKubelet) log() []podEvent {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]podEvent(nil), k.events...)
}

// podNode is the node a pod is bound or pinned to.
func podNode(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return ""
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && pod.Status.Phase == corev1.PodRunning
		}
	}
	return false
}
