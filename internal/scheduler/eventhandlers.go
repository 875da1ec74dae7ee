package scheduler

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// addHandlers routes informer events: bound pods to the cache, pending
// pods of ours to the queue, and every change that could make a waiting
// pod fit to the queue as a cluster event.
func (s *sched) addHandlers(pods, nodes, namespaces cache.SharedIndexInformer) error {
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onPodAdd(obj.(*corev1.Pod)) },
		UpdateFunc: func(o, n any) { s.onPodUpdate(o.(*corev1.Pod), n.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if pod, ok := tombstone[*corev1.Pod](obj); ok {
				s.onPodDelete(pod)
			}
		},
	}); err != nil {
		return err
	}
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			s.cache.AddNode(obj.(*corev1.Node))
			s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Node, ActionType: framework.Add})
		},
		UpdateFunc: func(o, n any) {
			old, node := o.(*corev1.Node), n.(*corev1.Node)
			s.cache.UpdateNode(node)
			if a := nodeChange(old, node); a != 0 {
				s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Node, ActionType: a})
			}
		},
		DeleteFunc: func(obj any) {
			if node, ok := tombstone[*corev1.Node](obj); ok {
				s.cache.RemoveNode(node)
			}
		},
	}); err != nil {
		return err
	}
	_, err := namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) {
			s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Namespace, ActionType: framework.Add})
		},
		UpdateFunc: func(o, n any) {
			if !maps.Equal(o.(*corev1.Namespace).Labels, n.(*corev1.Namespace).Labels) {
				s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Namespace, ActionType: framework.UpdateNamespaceLabel})
			}
		},
	})
	return err
}

func tombstone[T any](obj any) (T, bool) {
	if t, ok := obj.(T); ok {
		return t, true
	}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		t, ok := d.Obj.(T)
		return t, ok
	}
	var zero T
	return zero, false
}

func (s *sched) responsible(pod *corev1.Pod) bool {
	return pod.Spec.SchedulerName == s.cfg.SchedulerName
}

func (s *sched) onPodAdd(pod *corev1.Pod) {
	if pod.Spec.NodeName != "" {
		s.cache.AddPod(pod)
		s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: framework.Add})
		return
	}
	if s.responsible(pod) {
		s.queue.Add(pod)
	}
}

func (s *sched) onPodUpdate(old, pod *corev1.Pod) {
	if pod.Spec.NodeName != "" {
		if old.Spec.NodeName == "" {
			s.queue.Delete(pod) // bound, by us or anyone
			s.cache.AddPod(pod)
			s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: framework.Add})
			return
		}
		s.cache.UpdatePod(old, pod)
		var a framework.ActionType
		if !maps.Equal(old.Labels, pod.Labels) {
			a |= framework.UpdatePodLabel
		}
		if !apiequality.Semantic.DeepEqual(framework.PodRequests(old, false), framework.PodRequests(pod, false)) {
			a |= framework.UpdatePodRequest
		}
		if pod.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
			// A terminating pod still holds its room, but topology
			// spreading stops counting it.
			a |= framework.UpdatePodLabel
		}
		if a != 0 {
			s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: a})
		}
		return
	}
	if !s.responsible(pod) || s.cache.IsAssumed(pod) {
		return
	}
	s.queue.Update(old, pod)
}

func (s *sched) onPodDelete(pod *corev1.Pod) {
	if pod.Spec.NodeName != "" {
		s.cache.RemovePod(pod)
		s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: framework.Delete})
		return
	}
	s.queue.Delete(pod)
	if s.cache.IsAssumed(pod) {
		s.cache.ForgetPod(pod)
	}
}

// nodeChange says what about a node changed that scheduling looks at.
func nodeChange(old, node *corev1.Node) framework.ActionType {
	var a framework.ActionType
	if !apiequality.Semantic.DeepEqual(old.Status.Allocatable, node.Status.Allocatable) {
		a |= framework.UpdateNodeAllocatable
	}
	if !maps.Equal(old.Labels, node.Labels) {
		a |= framework.UpdateNodeLabel
	}
	if old.Spec.Unschedulable != node.Spec.Unschedulable || !slices.EqualFunc(old.Spec.Taints, node.Spec.Taints, func(x, y corev1.Taint) bool { return x.MatchTaint(&y) && x.Value == y.Value }) {
		a |= framework.UpdateNodeTaint
	}
	if !apiequality.Semantic.DeepEqual(old.Status.Images, node.Status.Images) {
		a |= framework.UpdateNodeImages
	}
	return a
}
