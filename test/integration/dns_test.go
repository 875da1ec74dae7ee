package integration

import (
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// hostIPv4 is the host's first global unicast IPv4, "" if it has none.
func hostIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// dnsQuery asks server one question and returns the answer section as
// "type data" strings, sorted, and the rcode.
func dnsQuery(t *testing.T, network, server, name string, qtype uint16) ([]string, int) {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, qtype), server)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	var out []string
	for _, rr := range r.Answer {
		h := rr.Header()
		out = append(out, mdns.TypeToString[h.Rrtype]+" "+rr.String()[len(h.String()):])
	}
	slices.Sort(out)
	return out, r.Rcode
}

// dnsPod creates a pod under a headless Service's subdomain, then plays
// kubelet: Running with ip, Ready as asked.
func dnsPod(t *testing.T, c kubernetes.Interface, ns, name, subdomain, ip string, ready bool) {
	t.Helper()
	pod := makePod(name).Labels("app", subdomain).Node("dns-n1").Obj()
	pod.Spec.Hostname, pod.Spec.Subdomain = name, subdomain
	if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	podStatus(t, c, ns, name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		setPodReady(p, ready)
	})
}

// TestClusterDNS resolves Services through the DNS a real control plane
// runs, reached where the kube-dns Service's endpoints say it listens.
func TestClusterDNS(t *testing.T) {
	t.Parallel()
	// EndpointSlices may not hold loopback addresses: advertise a real
	// one, when the host has it, to check the slice too.
	host := hostIPv4()
	cp := testutil.StartControlPlane(t, func(c *server.Config) {
		if host != "" {
			c.AdvertiseAddress, c.BindAddress = host, "0.0.0.0"
		}
	})
	c := cp.Client
	ctx := testCtx(t)
	listening := cp.Server().DNSAddrs()
	if len(listening) != 1 {
		t.Fatalf("DNS listens on %v, want one address", listening)
	}
	_, p, _ := net.SplitHostPort(listening[0])
	port, _ := strconv.Atoi(p)
	advertise := cp.Server().AdvertiseAddress()

	// Bootstrap made the Service.
	svc, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-dns service: %v", err)
	}
	wantPorts := []corev1.ServicePort{
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
		{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
	}
	if svc.Spec.ClusterIP != "10.43.0.10" || svc.Labels["k8s-app"] != "kube-dns" || svc.Spec.Selector != nil ||
		!slices.Equal(svc.Spec.Ports, wantPorts) {
		t.Errorf("kube-dns: clusterIP %s labels %v selector %v ports %v", svc.Spec.ClusterIP, svc.Labels, svc.Spec.Selector, svc.Spec.Ports)
	}
	if got := cp.Server().ClusterDNSIP().String(); got != "10.43.0.10" {
		t.Errorf("ClusterDNSIP %s", got)
	}

	// Its endpoints name this server's listener, before Ready.
	ep, err := c.CoreV1().Endpoints("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kube-dns endpoints: %v", err)
	}
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].IP != advertise ||
		len(ep.Subsets[0].Ports) != 2 || ep.Subsets[0].Ports[0].Port != int32(port) || ep.Subsets[0].Ports[1].Port != int32(port) {
		t.Fatalf("kube-dns endpoints %+v, want %s:%d", ep.Subsets, advertise, port)
	}
	target := net.JoinHostPort(ep.Subsets[0].Addresses[0].IP, strconv.Itoa(int(ep.Subsets[0].Ports[0].Port)))
	if host != "" {
		list, err := c.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 || len(list.Items[0].Endpoints) != 1 || len(list.Items[0].Ports) != 2 {
			t.Fatalf("kube-dns slices %+v, want one endpoint", list.Items)
		}
		s := list.Items[0]
		if s.Endpoints[0].Addresses[0] != host || *s.Ports[0].Port != int32(port) || *s.Ports[1].Port != int32(port) {
			t.Fatalf("kube-dns slice endpoint %v ports %v, want %s:%d", s.Endpoints[0].Addresses, s.Ports, host, port)
		}
		// Ask exactly where the slice points.
		target = net.JoinHostPort(s.Endpoints[0].Addresses[0], strconv.Itoa(int(*s.Ports[0].Port)))
	} else {
		t.Log("host has no global IPv4: the slice holds no loopback address; querying where the Endpoints point")
	}

	expect := func(network, name string, qtype uint16, rcode int, want ...string) {
		t.Helper()
		got, rc := dnsQuery(t, network, target, name, qtype)
		if rc != rcode || !slices.Equal(got, want) {
			t.Errorf("%s %s over %s: %s %q, want %s %q", name, mdns.TypeToString[qtype], network,
				mdns.RcodeToString[rc], got, mdns.RcodeToString[rcode], want)
		}
	}
	expect("udp", "kubernetes.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, "A 10.43.0.1")
	expect("tcp", "kube-dns.kube-system.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, "A 10.43.0.10")
	expect("udp", "10.0.43.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR kube-dns.kube-system.svc.cluster.local.")
	expect("udp", "_dns._udp.kube-dns.kube-system.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess,
		"SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.")

	// A Service created now resolves once the watch brings it.
	ns := newNamespace(t, c)
	web, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	webName := "web." + ns + ".svc.cluster.local."
	testutil.Eventually(t, 30*time.Second, func() bool {
		got, _ := dnsQuery(t, "udp", target, webName, mdns.TypeA)
		return slices.Equal(got, []string{"A " + web.Spec.ClusterIP})
	}, "%s to resolve to %s", webName, web.Spec.ClusterIP)
	expect("udp", "_http._tcp."+webName, mdns.TypeSRV, mdns.RcodeSuccess, "SRV 0 100 80 "+webName)

	// A headless Service: the EndpointSlice controller lists its ready
	// pods, with their hostnames.
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dns-n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dnsPod(t, c, ns, "db-0", "db", "10.42.7.10", true)
	dnsPod(t, c, ns, "db-1", "db", "10.42.7.11", true)
	dnsPod(t, c, ns, "db-2", "db", "10.42.7.12", false)
	dbName := "db." + ns + ".svc.cluster.local."
	testutil.Eventually(t, 30*time.Second, func() bool {
		got, _ := dnsQuery(t, "udp", target, dbName, mdns.TypeA)
		return slices.Equal(got, []string{"A 10.42.7.10", "A 10.42.7.11"})
	}, "%s to resolve to its two ready pods", dbName)
	expect("tcp", "db-1."+dbName, mdns.TypeA, mdns.RcodeSuccess, "A 10.42.7.11")
	expect("udp", "db-2."+dbName, mdns.TypeA, mdns.RcodeNameError)
	expect("udp", "_pg._tcp."+dbName, mdns.TypeSRV, mdns.RcodeSuccess,
		"SRV 0 50 5432 db-0."+dbName, "SRV 0 50 5432 db-1."+dbName)
	expect("udp", "10.7.42.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, "PTR db-0."+dbName)

	// Names under the domain that are not there: NXDOMAIN, with the SOA.
	r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).Exchange(new(mdns.Msg).SetQuestion(webName+ns+".svc.cluster.local.", mdns.TypeA), target)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != mdns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != mdns.TypeSOA {
		t.Errorf("search-path name: %s, authority %v", mdns.RcodeToString[r.Rcode], r.Ns)
	}

	// Deleting the Service takes its name away.
	if err := c.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, rc := dnsQuery(t, "udp", target, webName, mdns.TypeA)
		return rc == mdns.RcodeNameError
	}, "%s to be gone", webName)
}
