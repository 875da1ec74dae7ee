package endpoints

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/controller/podendpoint"
)

// MaxAddresses is upstream's cap on addresses in one Endpoints object;
// beyond it the object is truncated and annotated, and consumers are
// expected to read EndpointSlices instead.
const MaxAddresses = 1000

// subsets computes a Service's Endpoints subsets from its pods. Pods are
// grouped by the ports they resolve to, since named target ports may be
// different numbers in different pods. It reports whether addresses were
// dropped to stay under max.
func subsets(svc *corev1.Service, pods []*corev1.Pod, max int) ([]corev1.EndpointSubset, bool) {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	family := corev1.IPv4Protocol
	if len(svc.Spec.IPFamilies) > 0 {
		family = svc.Spec.IPFamilies[0]
	}
	byPorts := map[string]*corev1.EndpointSubset{}
	var order []string
	for _, pod := range pods {
		if podendpoint.Terminal(pod) {
			continue
		}
		// Terminating pods leave Endpoints at once (slices keep them as
		// terminating), unless the Service publishes everything.
		if pod.DeletionTimestamp != nil && !svc.Spec.PublishNotReadyAddresses {
			continue
		}
		ip := podendpoint.IPOfFamily(pod, family)
		if ip == "" {
			continue
		}
		var ports []corev1.EndpointPort
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			p, ok := podendpoint.FindPort(pod, sp)
			if !ok {
				continue
			}
			proto := sp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: p, Protocol: proto, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		slices.SortFunc(ports, func(a, b corev1.EndpointPort) int { return cmp.Compare(a.Name, b.Name) })
		key := portsKey(ports)
		ss := byPorts[key]
		if ss == nil {
			ss = &corev1.EndpointSubset{Ports: ports}
			byPorts[key] = ss
			order = append(order, key)
		}
		addr := corev1.EndpointAddress{IP: ip,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}
		if pod.Spec.NodeName != "" {
			n := pod.Spec.NodeName
			addr.NodeName = &n
		}
		addr.Hostname = podendpoint.Hostname(pod, svc)
		if svc.Spec.PublishNotReadyAddresses || podendpoint.IsReady(pod) {
			ss.Addresses = append(ss.Addresses, addr)
		} else {
			ss.NotReadyAddresses = append(ss.NotReadyAddresses, addr)
		}
	}
	slices.Sort(order)
	out := make([]corev1.EndpointSubset, 0, len(order))
	for _, k := range order {
		ss := byPorts[k]
		sortAddrs(ss.Addresses)
		sortAddrs(ss.NotReadyAddresses)
		out = append(out, *ss)
	}
	truncated := truncate(out, max)
	return slices.DeleteFunc(out, func(s corev1.EndpointSubset) bool {
		return len(s.Addresses)+len(s.NotReadyAddresses) == 0
	}), truncated
}

func sortAddrs(a []corev1.EndpointAddress) {
	slices.SortFunc(a, func(x, y corev1.EndpointAddress) int { return cmp.Compare(x.IP, y.IP) })
}

func portsKey(ports []corev1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.Name + "/" + string(p.Protocol) + "/" + strconv.Itoa(int(p.Port)) + ";")
	}
	return b.String()
}

// truncate drops addresses beyond max, not-ready ones first so that
// traffic keeps going to as many serving pods as fit.
func truncate(ss []corev1.EndpointSubset, max int) bool {
	ready, notReady := 0, 0
	for _, s := range ss {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	if ready+notReady <= max {
		return false
	}
	budget := max
	for i := range ss {
		n := min(len(ss[i].Addresses), budget)
		ss[i].Addresses = ss[i].Addresses[:n]
		budget -= n
	}
	for i := range ss {
		n := min(len(ss[i].NotReadyAddresses), budget)
		ss[i].NotReadyAddresses = ss[i].NotReadyAddresses[:n]
		budget -= n
	}
	return true
}
