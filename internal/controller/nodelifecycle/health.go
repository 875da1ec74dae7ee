package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"
)

// health is what the controller last saw of a node's heartbeats. Silence
// is measured on this controller's own clock from when a heartbeat last
// changed, never by comparing the kubelet's timestamps with ours, so
// clock skew between hosts cannot make a node look dead.
type health struct {
	probe          time.Time // our time when a heartbeat last changed
	readyHeartbeat metav1.Time
	leaseRenew     metav1.MicroTime
}

// conditions a silent node's kubelet can no longer vouch for.
var kubeletConditions = []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure}

// The taints upstream puts on unhealthy nodes.
var (
	unreachableTaints = []corev1.Taint{
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute},
	}
	notReadyTaints = []corev1.Taint{
		{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute},
	}
)

// monitor checks every node once.
func (c *Controller) monitor(ctx context.Context) error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		if err := c.checkNode(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// silent updates the node's heartbeat record and reports whether it has
// been quiet for longer than the grace period.
func (c *Controller) silent(n *corev1.Node) bool {
	now := c.cfg.Now()
	var hb metav1.Time
	if rc := condition(n, corev1.NodeReady); rc != nil {
		hb = rc.LastHeartbeatTime
	}
	var renew metav1.MicroTime
	if l := c.lease(n.Name); l != nil && l.Spec.RenewTime != nil {
		renew = *l.Spec.RenewTime
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.health[n.Name]
	if h == nil {
		// First sight: the grace period starts now, as upstream, so a
		// controller restart does not declare every node dead at once.
		c.health[n.Name] = &health{probe: now, readyHeartbeat: hb, leaseRenew: renew}
		return false
	}
	if !hb.Equal(&h.readyHeartbeat) || !renew.Equal(&h.leaseRenew) {
		h.probe, h.readyHeartbeat, h.leaseRenew = now, hb, renew
	}
	return now.Sub(h.probe) > c.cfg.GracePeriod
}

// checkNode marks a silent node Unknown, sets the taints that match its
// Ready condition and marks its pods not ready when it is not.
func (c *Controller) checkNode(ctx context.Context, n *corev1.Node) error {
	if c.silent(n) {
		if rc := condition(n, corev1.NodeReady); rc == nil || rc.Status != corev1.ConditionUnknown {
			updated, err := c.markUnknown(ctx, n)
			if err != nil {
				return err
			}
			n = updated
		}
	}
	rc := condition(n, corev1.NodeReady)
	if rc == nil {
		// Never reported and not yet overdue: nothing to say about it.
		return nil
	}
	var want []corev1.Taint
	switch rc.Status {
	case corev1.ConditionFalse:
		want = notReadyTaints
	case corev1.ConditionUnknown:
		want = unreachableTaints
	}
	if err := c.setTaints(ctx, n.Name, want); err != nil {
		return err
	}
	if rc.Status != corev1.ConditionTrue {
		return c.markPodsNotReady(ctx, n.Name)
	}
	return nil
}

// markUnknown sets the kubelet's conditions to Unknown, as upstream does
// when a node stops posting status.
func (c *Controller) markUnknown(ctx context.Context, n *corev1.Node) (*corev1.Node, error) {
	now := metav1.NewTime(c.cfg.Now())
	n = n.DeepCopy()
	for _, t := range kubeletConditions {
		if cond := condition(n, t); cond != nil {
			if cond.Status != corev1.ConditionUnknown {
				cond.Status, cond.LastTransitionTime = corev1.ConditionUnknown, now
			}
			cond.Reason, cond.Message = "NodeStatusUnknown", "Kubelet stopped posting node status."
			continue
		}
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: t, Status: corev1.ConditionUnknown,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.",
			LastHeartbeatTime: n.CreationTimestamp, LastTransitionTime: now})
	}
	updated, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("mark unknown: %w", err)
	}
	c.log.Info("node stopped posting status", "node", n.Name)
	if c.recorder != nil {
		c.recorder.Eventf(&corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID}, corev1.EventTypeNormal,
			"NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
	}
	return updated, nil
}

// setTaints makes the node's health taints exactly want, leaving every
// other taint alone and keeping timeAdded of taints already there: the
// NoExecute one starts the clock on tolerationSeconds.
func (c *Controller) setTaints(ctx context.Context, name string, want []corev1.Taint) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
		next := nextTaints(n.Spec.Taints, want, metav1.NewTime(c.cfg.Now()))
		if taintsEqual(next, n.Spec.Taints) {
			return nil
		}
		n.Spec.Taints = next
		_, err = c.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func isHealthTaint(t corev1.Taint) bool {
	return (t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady) &&
		(t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute)
}

// nextTaints is cur with its health taints replaced by want.
func nextTaints(cur, want []corev1.Taint, now metav1.Time) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range cur {
		if !isHealthTaint(t) || slices.ContainsFunc(want, func(w corev1.Taint) bool { return w.MatchTaint(&t) }) {
			out = append(out, t)
		}
	}
	for _, w := range want {
		if slices.ContainsFunc(out, func(t corev1.Taint) bool { return t.MatchTaint(&w) }) {
			continue
		}
		if w.Effect == corev1.TaintEffectNoExecute {
			w.TimeAdded = &now
		}
		out = append(out, w)
	}
	return out
}

func taintsEqual(a, b []corev1.Taint) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.Taint) bool { return x.MatchTaint(&y) && x.Value == y.Value })
}

// markPodsNotReady flips the Ready condition of the node's pods to False:
// nobody is vouching for them any more.
func (c *Controller) markPodsNotReady(ctx context.Context, node string) error {
	var errs []error
	for _, p := range c.podsOn(node) {
		i := slices.IndexFunc(p.Status.Conditions, func(pc corev1.PodCondition) bool { return pc.Type == corev1.PodReady })
		if i < 0 || p.Status.Conditions[i].Status == corev1.ConditionFalse {
			continue
		}
		p = p.DeepCopy()
		p.Status.Conditions[i].Status = corev1.ConditionFalse
		p.Status.Conditions[i].LastTransitionTime = metav1.NewTime(c.cfg.Now())
		_, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("pod %s/%s not ready: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func condition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}
