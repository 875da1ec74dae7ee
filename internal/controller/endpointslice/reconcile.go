package endpointslice

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller/podendpoint"
)

// Labels upstream puts on the slices this controller manages.
const (
	// ManagedByLabel names the writer of a slice; other writers' slices
	// (mirrored or user-made) are left alone.
	ManagedByLabel = discoveryv1.LabelManagedBy
	// ManagedBy is this controller's value, upstream's.
	ManagedBy = "endpointslice-controller.k8s.io"
	// headlessLabel marks slices of Services without a cluster IP.
	headlessLabel = corev1.IsHeadlessService
)

// DefaultMaxEndpoints is upstream's default number of endpoints per slice.
const DefaultMaxEndpoints = 100

// plan is what a sync writes.
type plan struct {
	create, update, delete []*discoveryv1.EndpointSlice
}

func (p plan) empty() bool { return len(p.create)+len(p.update)+len(p.delete) == 0 }

// group is the endpoints that share an address type and a port set: one
// or more slices hold each group.
type group struct {
	addressType discoveryv1.AddressType
	ports       []discoveryv1.EndpointPort
	order       []string // endpoint keys, in pod name order
	endpoints   map[string]discoveryv1.Endpoint
}

// desiredGroups computes every endpoint the Service should have, grouped
// by address type and resolved ports. Pods resolve named ports each on
// their own, so pods disagreeing on a port's number land in different
// groups, as upstream.
func desiredGroups(svc *corev1.Service, pods []*corev1.Pod, zoneOf func(node string) string) map[string]*group {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	groups := map[string]*group{}
	for _, family := range families(svc) {
		at := discoveryv1.AddressType(family)
		for _, pod := range pods {
			if podendpoint.Terminal(pod) {
				continue
			}
			ip := podendpoint.IPOfFamily(pod, family)
			if ip == "" {
				continue
			}
			ports := podPorts(svc, pod)
			key := string(at) + "|" + portsKey(ports)
			g := groups[key]
			if g == nil {
				g = &group{addressType: at, ports: ports, endpoints: map[string]discoveryv1.Endpoint{}}
				groups[key] = g
			}
			ep := podEndpoint(svc, pod, ip, zoneOf)
			k := endpointKey(ep)
			if _, dup := g.endpoints[k]; !dup {
				g.order = append(g.order, k)
			}
			g.endpoints[k] = ep
		}
	}
	return groups
}

// families are the address families the Service wants slices for.
func families(svc *corev1.Service) []corev1.IPFamily {
	if len(svc.Spec.IPFamilies) == 0 {
		return []corev1.IPFamily{corev1.IPv4Protocol}
	}
	return svc.Spec.IPFamilies
}

func podPorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		port, ok := podendpoint.FindPort(pod, sp)
		if !ok {
			continue // upstream skips a port the pod does not name
		}
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		out = append(out, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(port), Protocol: ptr.To(proto), AppProtocol: sp.AppProtocol})
	}
	return out
}

func podEndpoint(svc *corev1.Service, pod *corev1.Pod, ip string, zoneOf func(string) string) discoveryv1.Endpoint {
	serving := svc.Spec.PublishNotReadyAddresses || podendpoint.IsReady(pod)
	terminating := pod.DeletionTimestamp != nil
	// Ready is never true for a terminating pod unless the Service asks
	// for not-ready addresses: old consumers only look at ready.
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if h := podendpoint.Hostname(pod, svc); h != "" {
		ep.Hostname = ptr.To(h)
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = ptr.To(pod.Spec.NodeName)
		if z := zoneOf(pod.Spec.NodeName); z != "" {
			ep.Zone = ptr.To(z)
		}
	}
	return ep
}

// endpointKey identifies an endpoint across syncs: the pod it stands for.
func endpointKey(ep discoveryv1.Endpoint) string {
	if ep.TargetRef != nil && ep.TargetRef.UID != "" {
		return string(ep.TargetRef.UID)
	}
	return strings.Join(ep.Addresses, ",")
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		parts = append(parts, ptr.Deref(p.Name, "")+"/"+string(ptr.Deref(p.Protocol, corev1.ProtocolTCP))+"/"+
			strconv.Itoa(int(ptr.Deref(p.Port, 0)))+"/"+ptr.Deref(p.AppProtocol, ""))
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

func sliceKey(s *discoveryv1.EndpointSlice) string {
	return string(s.AddressType) + "|" + portsKey(s.Ports)
}

// reconcile plans the writes that turn existing (this controller's slices
// of svc) into desired. It keeps churn low as upstream does: endpoints
// stay in the slice that holds them, new ones fill slices already being
// written before any new slice is made, and a slice that would be
// deleted is reused for a slice that would be created.
func reconcile(svc *corev1.Service, desired map[string]*group, existing []*discoveryv1.EndpointSlice, max int) plan {
	var p plan
	byKey := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		byKey[sliceKey(s)] = append(byKey[sliceKey(s)], s)
	}
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var fresh []*discoveryv1.EndpointSlice // to create, unless reused
	for _, k := range keys {
		g := desired[k]
		have := byKey[k]
		delete(byKey, k)
		slices.SortFunc(have, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
		placed := map[string]bool{}
		var work []*discoveryv1.EndpointSlice // copies, parallel to have
		changed := make([]bool, len(have))
		for i, s := range have {
			c := s.DeepCopy()
			c.Endpoints = nil
			for _, ep := range s.Endpoints {
				k := endpointKey(ep)
				if d, ok := g.endpoints[k]; ok && !placed[k] && len(c.Endpoints) < max {
					c.Endpoints = append(c.Endpoints, d)
					placed[k] = true
				}
			}
			changed[i] = !apiequality.Semantic.DeepEqual(c.Endpoints, s.Endpoints) || setMeta(c, svc)
			work = append(work, c)
		}
		var pending []discoveryv1.Endpoint
		for _, k := range g.order {
			if !placed[k] {
				pending = append(pending, g.endpoints[k])
			}
		}
		// Fill slices being written anyway first, then the others.
		for _, pass := range []bool{true, false} {
			for i, c := range work {
				if changed[i] != pass {
					continue
				}
				for len(pending) > 0 && len(c.Endpoints) < max {
					c.Endpoints = append(c.Endpoints, pending[0])
					pending = pending[1:]
					changed[i] = true
				}
			}
		}
		for i, c := range work {
			switch {
			case len(c.Endpoints) == 0:
				p.delete = append(p.delete, have[i])
			case changed[i]:
				p.update = append(p.update, c)
			}
		}
		for len(pending) > 0 {
			n := min(max, len(pending))
			s := newSlice(svc, g.addressType)
			s.Ports = g.ports
			s.Endpoints = pending[:n]
			pending = pending[n:]
			fresh = append(fresh, s)
		}
	}
	// Slices of port sets no longer wanted.
	stale := make([]string, 0, len(byKey))
	for k := range byKey {
		stale = append(stale, k)
	}
	slices.Sort(stale)
	for _, k := range stale {
		p.delete = append(p.delete, byKey[k]...)
	}
	if len(desired) == 0 {
		p.delete, fresh = placeholder(svc, p.delete, fresh)
	}
	// Reuse a doomed slice of the same address type rather than delete
	// one and create another.
	for _, s := range fresh {
		i := slices.IndexFunc(p.delete, func(d *discoveryv1.EndpointSlice) bool { return d.AddressType == s.AddressType })
		if i < 0 {
			p.create = append(p.create, s)
			continue
		}
		reused := p.delete[i].DeepCopy()
		p.delete = slices.Delete(p.delete, i, i+1)
		reused.Ports, reused.Endpoints = s.Ports, s.Endpoints
		setMeta(reused, svc)
		p.update = append(p.update, reused)
	}
	return p
}

// placeholder keeps one empty slice for a Service with no endpoints, as
// upstream, so watchers can tell "no endpoints" from "not processed".
func placeholder(svc *corev1.Service, doomed, fresh []*discoveryv1.EndpointSlice) ([]*discoveryv1.EndpointSlice, []*discoveryv1.EndpointSlice) {
	at := discoveryv1.AddressType(families(svc)[0])
	for i, d := range doomed {
		if len(d.Endpoints) == 0 && len(d.Ports) == 0 && d.AddressType == at && !metaDrift(d, svc) {
			return slices.Delete(slices.Clone(doomed), i, i+1), fresh
		}
	}
	return doomed, append(fresh, newSlice(svc, at))
}

func newSlice(svc *corev1.Service, at discoveryv1.AddressType) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{GenerateName: svc.Name + "-", Namespace: svc.Namespace},
		AddressType: at,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	setMeta(s, svc)
	return s
}

// wantLabels are the Service's labels plus the ones identifying the slice.
func wantLabels(svc *corev1.Service) map[string]string {
	l := map[string]string{}
	for k, v := range svc.Labels {
		l[k] = v
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[ManagedByLabel] = ManagedBy
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		l[headlessLabel] = ""
	}
	return l
}

func ownerRef(svc *corev1.Service) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func metaDrift(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	return !apiequality.Semantic.DeepEqual(map[string]string(s.Labels), wantLabels(svc)) ||
		!apiequality.Semantic.DeepEqual(s.OwnerReferences, []metav1.OwnerReference{ownerRef(svc)})
}

// setMeta gives s the labels and owner it should have and reports
// whether anything changed.
func setMeta(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	if !metaDrift(s, svc) {
		return false
	}
	s.Labels = wantLabels(svc)
	s.OwnerReferences = []metav1.OwnerReference{ownerRef(svc)}
	return true
}
