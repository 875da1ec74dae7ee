package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/dns"
)

// DNSServiceName is the cluster DNS Service in kube-system, named as
// upstream's so that tools looking for it find it.
const DNSServiceName = "kube-dns"

// dnsLeases are the Leases of the servers answering for kube-dns.
var dnsLeases = leaseSet{prefix: "skiff-dns-", label: "skiff.dev/cluster-dns"}

// dnsSliceManager marks the kube-dns EndpointSlices as the servers', so
// the EndpointSlice controller leaves them alone.
const dnsSliceManager = "cluster-dns.skiff.dev"

// dnsEnabled reports whether this server runs the cluster DNS.
func (s *Server) dnsEnabled() bool { return !slices.Contains(s.cfg.Disable, "dns") }

// ClusterDNSIP is the DNS Service's cluster IP, what pods' resolv.conf
// names: the tenth address of the service CIDR (10.43.0.10 by default).
// It is nil when the cluster DNS is disabled.
func (s *Server) ClusterDNSIP() net.IP {
	if !s.dnsEnabled() {
		return nil
	}
	return dns.ServiceIP(s.serviceIP)
}

// DNSAddrs returns where this server's cluster DNS listens (UDP and TCP),
// once Ready; hosts may query it there directly. Empty when disabled.
func (s *Server) DNSAddrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dns)
}

// startDNS runs the cluster DNS as a client of the API over the loopback
// address, waits until it answers, then lists it in the kube-dns Service's
// endpoints beside the other servers' until ctx ends.
func (s *Server) startDNS(ctx context.Context) error {
	if !s.dnsEnabled() {
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	d, err := dns.New(dns.Config{
		Client: client,
		Domain: s.cfg.ClusterDomain,
		Listen: []string{net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.ClusterDNSPort))},
		Logger: s.log,
	})
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := d.Run(ctx)
		select {
		case <-d.Ready():
			if err != nil {
				s.log.Error("cluster dns stopped", "err", err)
			}
		default: // start-up failed: startDNS returns it
		}
		runErr <- err
	}()
	select {
	case <-d.Ready():
	case err := <-runErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.dns = d.Addrs()
	s.mu.Unlock()
	_, port, _ := net.SplitHostPort(d.Addrs()[0])
	portNum, _ := strconv.Atoi(port)
	r := newEndpointsReconciler(client, dnsLeases, s.cfg.AdvertiseAddress, portNum, s.cfg.APIServerLeaseDuration,
		func(ctx context.Context, ids []string) error {
			if err := writeEndpoints(ctx, client, metav1.NamespaceSystem, DNSServiceName, dnsSubsets(ids)); err != nil {
				return err
			}
			return writeDNSSlices(ctx, client, ids)
		})
	s.runEndpointsReconciler(ctx, r, "cluster dns endpoints")
	return nil
}

// kubeDNSService is the cluster DNS Service. It has no selector: the
// servers list themselves in its endpoints. Its target ports are named,
// since each server's DNS port is its own.
func kubeDNSService(ip net.IP) *corev1.Service {
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: DNSServiceName, Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "skiff-dns"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: ip.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
			},
		},
	}
}

// dnsEndpointPorts are a DNS server's endpoint ports: one port, both
// transports, named as the Service's ports.
func dnsEndpointPorts(p int32) []corev1.EndpointPort {
	return []corev1.EndpointPort{
		{Name: "dns", Port: p, Protocol: corev1.ProtocolUDP},
		{Name: "dns-tcp", Port: p, Protocol: corev1.ProtocolTCP},
	}
}

func dnsSubsets(ids []string) []corev1.EndpointSubset { return serverSubsets(ids, dnsEndpointPorts) }

// dnsSlices are the kube-dns EndpointSlices for the live servers: one per
// address family and port, since a slice's ports hold for all its
// endpoints. Addresses a slice may not hold (loopback, link-local) are
// left out: a single-host server advertising 127.0.0.1 is reachable
// through the Endpoints only.
func dnsSlices(ids []string) []*discoveryv1.EndpointSlice {
	type group struct {
		family discoveryv1.AddressType
		port   int32
	}
	byGroup := map[group][]string{}
	for _, id := range ids {
		host, port, ok := splitIdentity(id)
		ip := net.ParseIP(host)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
			continue
		}
		g := group{discoveryv1.AddressTypeIPv4, port}
		if ip.To4() == nil {
			g.family = discoveryv1.AddressTypeIPv6
		}
		byGroup[g] = append(byGroup[g], ip.String())
	}
	var out []*discoveryv1.EndpointSlice
	for g, addrs := range byGroup {
		slices.Sort(addrs)
		addrs = slices.Compact(addrs)
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s-%s-%d", DNSServiceName, strings.ToLower(string(g.family)), g.port),
				Namespace: metav1.NamespaceSystem,
				Labels:    map[string]string{discoveryv1.LabelServiceName: DNSServiceName, discoveryv1.LabelManagedBy: dnsSliceManager},
			},
			AddressType: g.family,
			Endpoints:   []discoveryv1.Endpoint{},
		}
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
		}
		for _, p := range dnsEndpointPorts(g.port) {
			es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(p.Protocol)})
		}
		out = append(out, es)
	}
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// writeDNSSlices brings the kube-dns EndpointSlices to what ids say:
// creates and updates first, then deletes, so clients never see no
// server while one lives.
func writeDNSSlices(ctx context.Context, client kubernetes.Interface, ids []string) error {
	api := client.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem)
	list, err := api.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: DNSServiceName, discoveryv1.LabelManagedBy: dnsSliceManager}).String()})
	if err != nil {
		return fmt.Errorf("list dns endpoint slices: %w", err)
	}
	have := map[string]*discoveryv1.EndpointSlice{}
	for i := range list.Items {
		have[list.Items[i].Name] = &list.Items[i]
	}
	for _, want := range dnsSlices(ids) {
		cur, ok := have[want.Name]
		delete(have, want.Name)
		switch {
		case !ok:
			_, err = api.Create(ctx, want, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(discoveryv1.Resource("endpointslices"), want.Name, err) // another server's: retry
			}
		case apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports):
			continue
		default:
			cur.Endpoints, cur.Ports = want.Endpoints, want.Ports
			_, err = api.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("write endpoint slice %s: %w", want.Name, err)
		}
	}
	for name, stale := range have {
		rv := stale.ResourceVersion
		err := api.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpoint slice %s: %w", name, err)
		}
	}
	return nil
}
