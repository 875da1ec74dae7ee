package deployment

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// sync reconciles one Deployment. The order follows upstream: status only
// while deleting; paused or scaling-only changes resize without rolling
// out; otherwise the strategy rolls out.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		// Validation forbids it; never let a relic select every pod.
		return nil
	}
	rsList, err := c.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return c.syncStatusOnly(ctx, d, rsList)
	}
	if d, err = c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return c.syncScale(ctx, d, rsList)
	}
	if c.isScalingEvent(d, rsList) {
		return c.syncScale(ctx, d, rsList)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return c.rolloutRecreate(ctx, d, rsList)
	}
	return c.rolloutRolling(ctx, d, rsList)
}

// claimReplicaSets returns the ReplicaSets d controls, adopting matching
// orphans and releasing those whose labels stopped matching.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	all, err := c.rsLister.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var owned []*appsv1.ReplicaSet
	var errs []error
	rsc := c.client.AppsV1().ReplicaSets(d.Namespace)
	checked := false
	for _, rs := range all {
		ref := metav1.GetControllerOfNoCopy(rs)
		matches := sel.Matches(labels.Set(rs.Labels))
		switch {
		case ref != nil && ref.UID != d.UID:
		case ref != nil && matches:
			// Copies: later steps update these in place.
			owned = append(owned, rs.DeepCopy())
		case ref != nil:
			if d.DeletionTimestamp != nil {
				continue
			}
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`, d.UID, rs.UID)
			if _, err := rsc.Patch(ctx, rs.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("release %s: %w", rs.Name, err))
			}
		case matches && d.DeletionTimestamp == nil && rs.DeletionTimestamp == nil:
			// A stale cache must not adopt for a Deployment being deleted.
			if !checked {
				fresh, err := c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
				if err != nil {
					return nil, fmt.Errorf("recheck before adoption: %w", err)
				}
				if fresh.UID != d.UID || fresh.DeletionTimestamp != nil {
					return owned, nil
				}
				checked = true
			}
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":%q,"kind":%q,"name":%q,"uid":%q,"controller":true,"blockOwnerDeletion":true}],"uid":%q}}`,
				controllerKind.GroupVersion().String(), controllerKind.Kind, d.Name, d.UID, rs.UID)
			adopted, err := rsc.Patch(ctx, rs.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("adopt %s: %w", rs.Name, err))
				}
				continue
			}
			owned = append(owned, adopted)
		}
	}
	return owned, errors.Join(errs...)
}

// splitReplicaSets finds the ReplicaSet running d's current template (the
// oldest, should there be several) and the others.
func splitReplicaSets(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), rsList...)
	byCreation(sorted)
	for _, rs := range sorted {
		if newRS == nil && equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			newRS = rs
			continue
		}
		old = append(old, rs)
	}
	return newRS, old
}

// isScalingEvent reports a change of spec.replicas alone: some active
// ReplicaSet was sized for a different Deployment size.
func (c *Controller) isScalingEvent(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) bool {
	// A new template and a new size together count as scaling first, as
	// upstream does: the old ReplicaSets are resized, and the rollout
	// follows on the next sync.
	for _, rs := range active(rsList) {
		if n, ok := annotatedInt(rs, DesiredReplicasAnnotation); ok && n != replicas(d) {
			return true
		}
	}
	return false
}

// syncScale resizes without rolling out: for paused Deployments and pure
// scaling events.
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, old); err != nil {
		return err
	}
	if d.Spec.Paused {
		if err := c.cleanup(ctx, d, old); err != nil {
			return err
		}
	}
	all := old
	if newRS != nil {
		all = append(all, newRS)
	}
	return c.writeStatus(ctx, d, c.calculateStatus(d, all, newRS))
}

// syncStatusOnly reports status without acting, for a Deployment being
// deleted.
func (c *Controller) syncStatusOnly(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, _ := splitReplicaSets(d, rsList)
	return c.writeStatus(ctx, d, c.calculateStatus(d, rsList, newRS))
}

// checkPausedConditions records pausing and resuming in the Progressing
// condition, so the progress deadline does not run while paused.
func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	if !hasProgressDeadline(d) {
		return d, nil
	}
	cond := condition(&d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return d, nil
	}
	isPaused := cond != nil && cond.Reason == reasonPaused
	st := d.Status.DeepCopy()
	switch {
	case d.Spec.Paused && !isPaused:
		setCondition(st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, "Deployment is paused", c.now()))
	case !d.Spec.Paused && isPaused:
		setCondition(st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, "Deployment is resumed", c.now()))
	default:
		return d, nil
	}
	d.Status = *st
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of %s: %w", d.Name, err)
	}
	return out, nil
}

// getAllReplicaSets splits rsList into the new and old ReplicaSets, syncs
// the new one's revision and, if create, creates it when missing.
func (c *Controller) getAllReplicaSets(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing, old := splitReplicaSets(d, rsList)
	newRS, err := c.getNewReplicaSet(ctx, d, existing, old, create)
	return newRS, old, err
}

// getNewReplicaSet returns the ReplicaSet for d's template with its
// revision raised above every old one's, creating it if asked.
func (c *Controller) getNewReplicaSet(ctx context.Context, d *appsv1.Deployment, existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	newRevision := maxRevision(old) + 1
	rsc := c.client.AppsV1().ReplicaSets(d.Namespace)
	if existing != nil {
		rs := existing.DeepCopy()
		changed := setNewRSAnnotations(d, rs, newRevision, true)
		if rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			changed = true
		}
		if changed {
			var err error
			if rs, err = rsc.Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
				return nil, fmt.Errorf("update replica set %s: %w", existing.Name, err)
			}
		}
		if err := c.setRevision(ctx, d, rs.Annotations[RevisionAnnotation]); err != nil {
			return nil, err
		}
		if condition(&d.Status, appsv1.DeploymentProgressing) == nil {
			st := d.Status.DeepCopy()
			setCondition(st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", rs.Name), c.now()))
			if err := c.writeStatus(ctx, d, *st); err != nil {
				return nil, err
			}
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}
	hash := templateHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels = cloneMap(tmpl.Labels)
	tmpl.Labels[HashLabel] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[HashLabel] = hash
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, controllerKind)},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &zero, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: tmpl},
	}
	n := newRSReplicas(d, append(append([]*appsv1.ReplicaSet(nil), old...), rs), rs)
	rs.Spec.Replicas = &n
	setNewRSAnnotations(d, rs, newRevision, false)
	created, err := rsc.Create(ctx, rs, metav1.CreateOptions{})
	alreadyExisted := false
	switch {
	case apierrors.IsAlreadyExists(err):
		found, gerr := rsc.Get(ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("get replica set %s: %w", rs.Name, gerr)
		}
		if ref := metav1.GetControllerOfNoCopy(found); ref != nil && ref.UID == d.UID && equalIgnoreHash(&found.Spec.Template, &d.Spec.Template) {
			// Ours, and the cache has not seen it yet.
			created, alreadyExisted = found, true
			break
		}
		// A foreign ReplicaSet holds the name: bump the collision count so
		// the next sync hashes to a different one.
		st := d.Status.DeepCopy()
		cc := int32(0)
		if st.CollisionCount != nil {
			cc = *st.CollisionCount
		}
		cc++
		st.CollisionCount = &cc
		if werr := c.writeStatus(ctx, d, *st); werr != nil {
			return nil, werr
		}
		return nil, fmt.Errorf("replica set name %s taken; collision count now %d", rs.Name, cc)
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		c.recorder.Event(d, corev1.EventTypeWarning, "FailedCreate", msg)
		if hasProgressDeadline(d) {
			st := d.Status.DeepCopy()
			setCondition(st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonFailedRSCreate, msg, c.now()))
			_ = c.writeStatus(ctx, d, *st) // the create error below is what matters
		}
		return nil, fmt.Errorf("create replica set %s: %w", rs.Name, err)
	}
	if !alreadyExisted && n > 0 {
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	if err := c.setRevision(ctx, d, strconv.FormatInt(newRevision, 10)); err != nil {
		return nil, err
	}
	if !alreadyExisted && hasProgressDeadline(d) {
		st := d.Status.DeepCopy()
		setCondition(st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", created.Name), c.now()))
		if err := c.writeStatus(ctx, d, *st); err != nil {
			return nil, err
		}
	}
	return created, nil
}

// setRevision stores rev in d's revision annotation. It is metadata, so
// it goes through a patch of the Deployment rather than /status; the
// patch leaves spec alone and so does not bump the generation.
func (c *Controller) setRevision(ctx context.Context, d *appsv1.Deployment, rev string) error {
	if rev == "" || d.Annotations[RevisionAnnotation] == rev {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{RevisionAnnotation: rev}}})
	out, err := c.client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("set revision of %s: %w", d.Name, err)
	}
	d.Annotations, d.ResourceVersion = out.Annotations, out.ResourceVersion
	return nil
}

// newRSReplicas is how big the new ReplicaSet may be now: for a rolling
// update, as far as maxSurge allows toward the desired size; for
// Recreate, the desired size at once.
func newRSReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		return replicas(d)
	}
	current := sumSpec(all)
	maxTotal := replicas(d) + maxSurge(d)
	if current >= maxTotal {
		return rsReplicas(newRS)
	}
	up := min(maxTotal-current, replicas(d)-rsReplicas(newRS))
	return rsReplicas(newRS) + max(up, 0)
}

// scale resizes ReplicaSets after a change of spec.replicas. With one
// active ReplicaSet it takes the whole size; mid-rollout the change is
// shared out in proportion to each ReplicaSet's size, so the rollout's
// ratio of old to new is kept.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	if rs := activeOrLatest(newRS, old); rs != nil {
		if rsReplicas(rs) == replicas(d) {
			return nil
		}
		_, err := c.scaleRS(ctx, rs, replicas(d), d)
		return err
	}
	if newRS != nil && rsReplicas(newRS) == replicas(d) && newRS.Status.AvailableReplicas == replicas(d) {
		if n, ok := annotatedInt(newRS, DesiredReplicasAnnotation); ok && n == replicas(d) {
			// Saturated: the old ones can all go.
			for _, rs := range active(old) {
				if _, err := c.scaleRS(ctx, rs, 0, d); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		return nil
	}
	all := active(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	allowed := int32(0)
	if replicas(d) > 0 {
		allowed = replicas(d) + maxSurge(d)
	}
	toAdd := allowed - sumSpec(all)
	if toAdd == 0 || len(all) == 0 {
		return nil
	}
	bySize(all, toAdd > 0)
	sizes := make([]int32, len(all))
	var added int32
	for i, rs := range all {
		p := proportion(rs, d, toAdd, added)
		sizes[i] = rsReplicas(rs) + p
		added += p
	}
	// Rounding leaves a remainder; the largest ReplicaSet takes it.
	sizes[0] = max(sizes[0]+toAdd-added, 0)
	for i, rs := range all {
		if _, err := c.scaleRS(ctx, rs, sizes[i], d); err != nil {
			return err
		}
	}
	return nil
}

// activeOrLatest returns the one active ReplicaSet, or when none is
// active the new one (else the newest old one); nil when several are.
func activeOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	all := old
	if newRS != nil {
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	act := active(all)
	switch len(act) {
	case 0:
		if newRS != nil {
			return newRS
		}
		if len(old) == 0 {
			return nil
		}
		sorted := append([]*appsv1.ReplicaSet(nil), old...)
		byCreation(sorted)
		return sorted[len(sorted)-1]
	case 1:
		return act[0]
	}
	return nil
}

// proportion is rs's share of toAdd: its size scaled by the ratio of the
// new maximum to the maximum it was sized for, capped by what is left.
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	var frac int32
	if replicas(d) == 0 {
		frac = -rsReplicas(rs)
	} else {
		target := replicas(d) + maxSurge(d)
		was, ok := annotatedInt(rs, MaxReplicasAnnotation)
		if !ok || was == 0 {
			was = d.Status.Replicas
		}
		if was == 0 {
			frac = 0
		} else {
			frac = int32(math.Round(float64(rsReplicas(rs))*float64(target)/float64(was))) - rsReplicas(rs)
		}
	}
	left := toAdd - added
	if toAdd > 0 {
		return min(frac, left)
	}
	return max(frac, left)
}

// scaleRS sets rs's size and replicas annotations, with an event when the
// size changes.
func (c *Controller) scaleRS(ctx context.Context, rs *appsv1.ReplicaSet, n int32, d *appsv1.Deployment) (*appsv1.ReplicaSet, error) {
	cp := rs.DeepCopy()
	annChanged := setReplicasAnnotations(cp, replicas(d), replicas(d)+maxSurge(d))
	sizeChanged := rsReplicas(rs) != n
	if !annChanged && !sizeChanged {
		return rs, nil
	}
	from := rsReplicas(rs)
	cp.Spec.Replicas = &n
	out, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("scale replica set %s: %w", rs.Name, err)
	}
	if sizeChanged {
		dir := "up"
		if n < from {
			dir = "down"
		}
		c.recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, n)
	}
	*rs = *out
	return out, nil
}

// cleanup deletes the oldest empty ReplicaSets beyond
// revisionHistoryLimit; the ones kept are what `rollout undo` returns to.
func (c *Controller) cleanup(ctx context.Context, d *appsv1.Deployment, old []*appsv1.ReplicaSet) error {
	if d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	extra := len(alive) - int(*d.Spec.RevisionHistoryLimit)
	if extra <= 0 {
		return nil
	}
	byRevision(alive)
	for _, rs := range alive[:extra] {
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		err := c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old replica set %s: %w", rs.Name, err)
		}
	}
	return nil
}

// byRevision sorts oldest revision first, creation order on ties.
func byRevision(rss []*appsv1.ReplicaSet) {
	byCreation(rss)
	slices.SortStableFunc(rss, func(a, b *appsv1.ReplicaSet) int { return cmp.Compare(revision(a), revision(b)) })
}

// writeStatus stores st unless it is what d already has.
func (c *Controller) writeStatus(ctx context.Context, d *appsv1.Deployment, st appsv1.DeploymentStatus) error {
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		return nil
	}
	cp := d.DeepCopy()
	cp.Status = st
	out, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update status of %s: %w", d.Name, err)
	}
	*d = *out
	return nil
}
