package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// evictAt says when a pod must leave a node with these NoExecute taints:
// now if it fails to tolerate one, never if every toleration is
// unbounded, else when the soonest tolerationSeconds runs out, counted
// from when the taint was added (so restarts do not reset the clock).
func evictAt(pod *corev1.Pod, taints []corev1.Taint, now time.Time) (time.Time, bool) {
	var at time.Time
	evict := false
	for i := range taints {
		t := &taints[i]
		var match *corev1.Toleration
		for j := range pod.Spec.Tolerations {
			if pod.Spec.Tolerations[j].ToleratesTaint(klog.Background(), t, true) {
				match = &pod.Spec.Tolerations[j]
				break
			}
		}
		if match == nil {
			return now, true
		}
		if match.TolerationSeconds == nil {
			continue
		}
		start := now
		if t.TimeAdded != nil {
			start = t.TimeAdded.Time
		}
		d := time.Duration(max(*match.TolerationSeconds, 0)) * time.Second
		if !evict || start.Add(d).Before(at) {
			at, evict = start.Add(d), true
		}
	}
	return at, evict
}

// evict deletes the node's pods whose time is up and comes back for the
// others when theirs will be.
func (c *Controller) evict(ctx context.Context, nodeName string) error {
	node, err := c.nodes.Get(nodeName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			taints = append(taints, t)
		}
	}
	if len(taints) == 0 {
		return nil
	}
	now := c.cfg.Now()
	var next time.Duration
	var errs []error
	for _, pod := range c.podsOn(nodeName) {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		at, ok := evictAt(pod, taints, now)
		if !ok {
			continue
		}
		if wait := at.Sub(now); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		if err := c.deletePod(ctx, pod); err != nil {
			errs = append(errs, err)
		}
	}
	if next > 0 {
		c.evictions.AddAfter(nodeName, next)
	}
	return errors.Join(errs...)
}

// deletePod evicts one pod as upstream's taint manager does: a
// DisruptionTarget condition saying why, an event, then the delete.
func (c *Controller) deletePod(ctx context.Context, pod *corev1.Pod) error {
	p := pod.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager",
		Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.NewTime(c.cfg.Now())}
	replaced := false
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.DisruptionTarget {
			p.Status.Conditions[i], replaced = cond, true
		}
	}
	if !replaced {
		p.Status.Conditions = append(p.Status.Conditions, cond)
	}
	// The condition is informative; the delete below is what matters.
	if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && apierrors.IsNotFound(err) {
		return nil
	}
	if c.recorder != nil {
		c.recorder.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	}
	uid := pod.UID
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evict %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	c.log.Info("evicted pod from tainted node", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	return nil
}
