package endpointslice

import (
	"context"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// kubernetesKey is the API server's own Service. It has no selector: the
// servers list themselves in its Endpoints (internal/server/bootstrap.go).
const kubernetesKey = "default/kubernetes"

// syncKubernetes mirrors Endpoints default/kubernetes into the
// EndpointSlice default/kubernetes. Upstream the API server writes both
// itself; here the server keeps writing only the Endpoints and this
// controller derives the slice, so the server needs no second writer and
// every server's address that reaches the Endpoints reaches the slice.
// The slice carries the service-name label but no managed-by label, as
// upstream's does.
func (c *Controller) syncKubernetes(ctx context.Context) error {
	ns, name := "default", "kubernetes"
	cur, err := c.slices.EndpointSlices(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if apierrors.IsNotFound(err) {
		cur = nil
	}
	ep, err := c.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		if cur == nil {
			return nil
		}
		err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete kubernetes slice: %w", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	want := kubernetesSlice(ep)
	if cur == nil {
		_, err := c.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, want, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create kubernetes slice: %w", err)
		}
		return nil
	}
	if cur.AddressType == want.AddressType && apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) &&
		apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) && cur.Labels[discoveryv1.LabelServiceName] == name {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Endpoints, upd.Ports = want.Endpoints, want.Ports
	if upd.Labels == nil {
		upd.Labels = map[string]string{}
	}
	upd.Labels[discoveryv1.LabelServiceName] = name
	if upd.AddressType != want.AddressType {
		// The address type is immutable: replace the slice.
		if err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replace kubernetes slice: %w", err)
		}
		return errStale
	}
	if _, err := c.client.DiscoveryV1().EndpointSlices(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update kubernetes slice: %w", err)
	}
	return nil
}

// kubernetesSlice is the slice equivalent of the API server Endpoints:
// every listed server, ready.
func kubernetesSlice(ep *corev1.Endpoints) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: ep.Name, Namespace: ep.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: ep.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	seen := map[string]bool{}
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			// Slices may not hold loopback or link-local addresses (a
			// single-host server advertising 127.0.0.1 has none to list).
			ip := net.ParseIP(a.IP)
			if seen[a.IP] || ip == nil || ip.To4() == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			seen[a.IP] = true
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{a.IP},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			})
		}
		if s.Ports == nil {
			for _, p := range ss.Ports {
				s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port),
					Protocol: ptr.To(p.Protocol), AppProtocol: p.AppProtocol})
			}
		}
	}
	return s
}
