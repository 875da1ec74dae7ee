package server

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/internal/apiserver/ipalloc"
)

// systemNamespaces exist from the first start, as upstream.
var systemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// bootstrap creates the objects every cluster has. Each is created only if
// missing, so restarts and several servers are safe.
func (s *Server) bootstrap(ctx context.Context, alloc *ipalloc.Allocator) error {
	var objs []runtime.Object
	for _, ns := range systemNamespaces {
		objs = append(objs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}},
		})
	}
	for _, pc := range []struct {
		name  string
		value int32
	}{{"system-node-critical", 2000001000}, {"system-cluster-critical", 2000000000}} {
		objs = append(objs, &schedulingv1.PriorityClass{
			TypeMeta:    metav1.TypeMeta{Kind: "PriorityClass", APIVersion: "scheduling.k8s.io/v1"},
			ObjectMeta:  metav1.ObjectMeta{Name: pc.name},
			Value:       pc.value,
			Description: "Used for system critical pods that must not be moved from their current node.",
		})
	}
	_, port, _ := net.SplitHostPort(s.Addr())
	portNum, _ := strconv.Atoi(port)
	objs = append(objs, &corev1.Service{
		TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: alloc.FirstIP().String(),
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(int32(portNum))}},
		},
	})
	for _, obj := range objs {
		if err := s.ensure(ctx, obj); err != nil {
			return err
		}
	}
	if ip := s.ClusterDNSIP(); ip != nil {
		// Not fatal: the address may already be a user's Service (one
		// made while the DNS was disabled); the DNS still answers on its
		// host port.
		if err := s.ensure(ctx, kubeDNSService(ip)); err != nil {
			s.log.Warn("cluster dns service", "ip", ip.String(), "err", err)
		}
	}
	// Endpoints default/kubernetes is kept by the lease-based reconciler
	// (endpoints.go), which lists every live server, not just this one.
	return nil
}

// ensure creates obj unless an object of its kind and name exists. It
// keeps trying through etcd's transient failures: a server starting
// while the cluster elects a leader ("leader changed", a timeout) must
// wait for it rather than exit.
func (s *Server) ensure(ctx context.Context, obj runtime.Object) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	err = retryTransient(ctx, bootstrapRetryMin, bootstrapRetryMax, func() error {
		_, err := s.api.Get(ctx, gvk, m.GetNamespace(), m.GetName())
		if apierrors.IsNotFound(err) {
			_, err = s.api.Create(ctx, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			if transient(err) {
				s.log.Warn("bootstrap: retrying", "kind", gvk.Kind, "name", m.GetName(), "err", err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ensure %s %s: %w", gvk.Kind, m.GetName(), err)
	}
	return nil
}

// The back-off of bootstrap writes that failed for a transient reason.
const (
	bootstrapRetryMin = 100 * time.Millisecond
	bootstrapRetryMax = 2 * time.Second
)

// transient reports whether an API error may go away by itself: the
// storage is unavailable, timed out or lost its leader, as against a
// request that is wrong.
func transient(err error) bool {
	return apierrors.IsInternalError(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err)
}

// retryTransient calls fn until it succeeds, fails for a reason that is
// not transient, or ctx ends; the waits between calls double from first
// up to most.
func retryTransient(ctx context.Context, first, most time.Duration, fn func() error) error {
	wait := first
	for {
		err := fn()
		if err == nil || !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}
