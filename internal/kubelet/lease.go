package kubelet

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Lease timing, as upstream: renewed every 10 s, valid for 40 s.
const (
	leaseRenewInterval = 10 * time.Second
	leaseDuration      = 40 * time.Second
)

// renewLease creates or renews the node's Lease in kube-node-lease: it is
// the heartbeat the node lifecycle controller watches.
func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(k.clock.Now())
	if k.lease != nil {
		l := k.lease.DeepCopy()
		l.Spec.RenewTime = &now
		got, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			k.lease = got
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renew lease: %w", err)
		}
		k.lease = nil // stale copy: read it again below
	}
	l, err := leases.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(k.cfg.NodeName),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}
		if node, err := k.nodes.Get(k.cfg.NodeName); err == nil {
			// Owned by the Node, so the lease goes when the node does.
			l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
		}
		l, err = leases.Create(ctx, l, metav1.CreateOptions{})
	case err == nil:
		l.Spec.HolderIdentity = ptr.To(k.cfg.NodeName)
		l.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration / time.Second))
		l.Spec.RenewTime = &now
		l, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	k.lease = l
	return nil
}
