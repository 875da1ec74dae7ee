package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// DefaultAPIServerLeaseDuration is how long an API server's Lease lives
// unrenewed. Servers renew every third of it (10 s), so a server is only
// dropped from the `kubernetes` Service after missing two renewals in a
// row, and a dead one is gone from it within 40 s.
const DefaultAPIServerLeaseDuration = 30 * time.Second

// APIServerLabel marks the Leases API servers keep in kube-system.
const APIServerLabel = "skiff.dev/apiserver"

// apiServerLeasePrefix starts each API server's Lease name; a hash of its
// advertised address and port follows, so names are short, valid and
// stable across restarts.
const apiServerLeasePrefix = "skiff-apiserver-"

// endpointsReconciler keeps a Service's endpoints listing every live
// server: Endpoints default/kubernetes lists the API servers, kube-dns
// the cluster DNS servers (dns.go). Each server renews a Lease of its own
// and, on every renewal, writes the endpoints from all live Leases. Every
// server computes the same sorted list from the same Leases, so they
// agree rather than fight; a server that dies simply stops renewing and
// the others drop it once its Lease expires. This is upstream's "lease"
// endpoint reconciler, with a coordination.k8s.io Lease where upstream
// uses an etcd TTL key.
type endpointsReconciler struct {
	client   kubernetes.Interface
	identity string // "IP:port", the Lease's holderIdentity
	lease    string // the Lease's name
	label    string // the label every Lease of this set carries
	duration time.Duration
	now      func() time.Time
	// publish writes the live servers' identities wherever they are
	// listed; it may return a Conflict to be called again.
	publish func(ctx context.Context, ids []string) error
}

// leaseSet names one kind of per-server Lease.
type leaseSet struct{ prefix, label string }

var apiServerLeases = leaseSet{prefix: apiServerLeasePrefix, label: APIServerLabel}

func newEndpointsReconciler(client kubernetes.Interface, set leaseSet, ip string, port int, duration time.Duration,
	publish func(context.Context, []string) error) *endpointsReconciler {
	id := net.JoinHostPort(ip, strconv.Itoa(port))
	sum := sha256.Sum256([]byte(id))
	return &endpointsReconciler{client: client, identity: id, lease: set.prefix + hex.EncodeToString(sum[:5]), label: set.label,
		duration: duration, now: time.Now, publish: publish}
}

// startEndpointsReconciler lists this server in the `kubernetes` Service
// at once (so it is there when Ready closes), then keeps it and its peers
// listed until ctx ends; it takes itself out on the way down.
func (s *Server) startEndpointsReconciler(ctx context.Context) {
	rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
	if err != nil {
		s.log.Error("kubernetes endpoints reconciler", "err", fmt.Errorf("loopback client: %w", err))
		return
	}
	_, port, _ := net.SplitHostPort(s.Addr())
	portNum, _ := strconv.Atoi(port)
	client := kubernetes.NewForConfigOrDie(rc)
	r := newEndpointsReconciler(client, apiServerLeases, s.cfg.AdvertiseAddress, portNum, s.cfg.APIServerLeaseDuration,
		func(ctx context.Context, ids []string) error {
			return writeEndpoints(ctx, client, metav1.NamespaceDefault, "kubernetes", apiServerSubsets(ids))
		})
	s.runEndpointsReconciler(ctx, r, "kubernetes endpoints")
}

// runEndpointsReconciler lists this server at once, then renews until ctx
// ends, when it takes the server out.
func (s *Server) runEndpointsReconciler(ctx context.Context, r *endpointsReconciler, what string) {
	if err := r.reconcile(ctx); err != nil {
		s.log.Warn(what, "err", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(r.duration / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				// The API still serves until every component returns, so
				// leaving is a clean write, not a wait for expiry.
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := r.leave(stopCtx); err != nil {
					s.log.Warn(what+": leaving", "err", err)
				}
				return
			case <-tick.C:
				if err := r.reconcile(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn(what, "err", err)
				}
			}
		}
	}()
}

// reconcile renews this server's Lease, then writes the Endpoints.
func (r *endpointsReconciler) reconcile(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return err
	}
	return r.write(ctx, "")
}

// leave deletes this server's Lease and takes it out of the Endpoints.
func (r *endpointsReconciler) leave(ctx context.Context) error {
	err := r.client.CoordinationV1().Leases(metav1.NamespaceSystem).Delete(ctx, r.lease, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete lease: %w", err)
	}
	return r.write(ctx, r.identity)
}

func (r *endpointsReconciler) renew(ctx context.Context) error {
	leases := r.client.CoordinationV1().Leases(metav1.NamespaceSystem)
	now := metav1.NewMicroTime(r.now())
	secs := int32(r.duration / time.Second)
	if secs < 1 {
		secs = 1
	}
	l, err := leases.Get(ctx, r.lease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: r.lease, Labels: map[string]string{r.label: "true"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &r.identity, LeaseDurationSeconds: &secs,
				AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create lease: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get lease: %w", err)
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &r.identity, &secs, &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// live lists the "IP:port" of every server whose Lease has not expired,
// less except. Leases long expired are deleted on the way: their servers
// are gone, and a restarted one creates its Lease again.
func (r *endpointsReconciler) live(ctx context.Context, except string) ([]string, error) {
	leases := r.client.CoordinationV1().Leases(metav1.NamespaceSystem)
	list, err := leases.List(ctx, metav1.ListOptions{LabelSelector: r.label + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	now := r.now()
	var out []string
	for _, l := range list.Items {
		if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil || *l.Spec.HolderIdentity == except {
			continue
		}
		d := r.duration
		if l.Spec.LeaseDurationSeconds != nil {
			d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		expires := l.Spec.RenewTime.Add(d)
		if now.Before(expires) {
			out = append(out, *l.Spec.HolderIdentity)
			continue
		}
		if now.After(expires.Add(d)) {
			// Deleting only what is unchanged since we read it keeps a
			// server that has just come back.
			rv := l.ResourceVersion
			err := leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return nil, fmt.Errorf("delete expired lease %s: %w", l.Name, err)
			}
		}
	}
	return out, nil
}

// write publishes the live servers (less except), again on conflict.
func (r *endpointsReconciler) write(ctx context.Context, except string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ids, err := r.live(ctx, except)
		if err != nil {
			return err
		}
		return r.publish(ctx, ids)
	})
}

// writeEndpoints makes the Endpoints ns/name hold want, writing only when
// that changes what it says. The Endpoints are marked not to be mirrored:
// their servers keep any EndpointSlice themselves.
func writeEndpoints(ctx context.Context, client kubernetes.Interface, ns, name string, want []corev1.EndpointSubset) error {
	eps := client.CoreV1().Endpoints(ns)
	cur, err := eps.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if len(want) == 0 {
			return nil
		}
		_, err = eps.Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}}, Subsets: want}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("endpoints"), name, err) // someone else made it: retry
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("get endpoints: %w", err)
	}
	if apiequality.Semantic.DeepEqual(cur.Subsets, want) {
		return nil
	}
	cur.Subsets = want
	_, err = eps.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// apiServerSubsets turns "IP:port" identities into Endpoints subsets, one
// per port (servers normally share one), addresses sorted, so every
// server computes the same object from the same Leases.
func apiServerSubsets(ids []string) []corev1.EndpointSubset {
	return serverSubsets(ids, func(p int32) []corev1.EndpointPort {
		return []corev1.EndpointPort{{Name: "https", Port: p, Protocol: corev1.ProtocolTCP}}
	})
}

// serverSubsets groups "IP:port" identities by port, sorted; ports gives
// the endpoint ports of a server port.
func serverSubsets(ids []string, ports func(int32) []corev1.EndpointPort) []corev1.EndpointSubset {
	byPort := map[int32][]corev1.EndpointAddress{}
	for _, id := range ids {
		host, p, ok := splitIdentity(id)
		if !ok {
			continue // not ours to understand; never list garbage
		}
		byPort[p] = append(byPort[p], corev1.EndpointAddress{IP: host})
	}
	nums := make([]int32, 0, len(byPort))
	for p := range byPort {
		nums = append(nums, p)
	}
	slices.Sort(nums)
	var out []corev1.EndpointSubset
	for _, p := range nums {
		addrs := byPort[p]
		slices.SortFunc(addrs, func(a, b corev1.EndpointAddress) int { return cmp.Compare(a.IP, b.IP) })
		addrs = slices.CompactFunc(addrs, func(a, b corev1.EndpointAddress) bool { return a.IP == b.IP })
		out = append(out, corev1.EndpointSubset{Addresses: addrs, Ports: ports(p)})
	}
	return out
}

// splitIdentity parses a Lease's "IP:port".
func splitIdentity(id string) (string, int32, bool) {
	host, p, err := net.SplitHostPort(id)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || net.ParseIP(host) == nil || port <= 0 || port > 65535 {
		return "", 0, false
	}
	return host, int32(port), true
}
