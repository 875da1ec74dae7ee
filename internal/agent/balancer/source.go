package balancer

import (
	"context"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Source tells a balancer which API servers exist.
type Source interface {
	// Run calls set with the servers' addresses (host:port) whenever
	// they change, until ctx ends.
	Run(ctx context.Context, set func(addrs []string)) error
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, set func(addrs []string)) error

// Run calls f.
func (f SourceFunc) Run(ctx context.Context, set func(addrs []string)) error { return f(ctx, set) }

// kubernetesService is the Service every API server lists itself in.
const kubernetesService = "kubernetes"

// EndpointsSource learns the API servers from Endpoints default/kubernetes,
// which every live API server keeps itself in through a Lease of its own.
// It watches just that object; the informer re-lists after a broken watch.
func EndpointsSource(client kubernetes.Interface) Source {
	return SourceFunc(func(ctx context.Context, set func([]string)) error {
		factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithNamespace(metav1.NamespaceDefault),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", kubernetesService).String()
			}))
		inf := factory.Core().V1().Endpoints().Informer()
		update := func(obj any) {
			if ep, ok := obj.(*corev1.Endpoints); ok && ep.Name == kubernetesService {
				set(endpointAddresses(ep))
			}
		}
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    update,
			UpdateFunc: func(_, obj any) { update(obj) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if ep, ok := obj.(*corev1.Endpoints); ok && ep.Name == kubernetesService {
					set(nil)
				}
			},
		})
		if err != nil {
			return err
		}
		defer func() { _ = inf.RemoveEventHandler(reg) }()
		factory.Start(ctx.Done())
		<-ctx.Done()
		factory.Shutdown()
		return nil
	})
}

// endpointAddresses lists the ready addresses of ep as host:port.
func endpointAddresses(ep *corev1.Endpoints) []string {
	var out []string
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			for _, a := range ss.Addresses {
				out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return out
}
