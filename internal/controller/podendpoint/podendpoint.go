// Package podendpoint answers the questions the endpointslice and
// endpoints controllers share: which pods back a Service, whether each is
// ready, and which port a Service port reaches in a given pod.
package podendpoint

import (
	"net"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// IsReady reports whether the pod's Ready condition is True.
func IsReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Terminal reports whether the pod has finished for good: such pods never
// serve again, so upstream leaves them out of every endpoint list.
func Terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// IPs returns the pod's addresses, primary first.
func IPs(pod *corev1.Pod) []string {
	var out []string
	for _, ip := range pod.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && pod.Status.PodIP != "" {
		out = append(out, pod.Status.PodIP)
	}
	return out
}

// IPOfFamily returns the pod's first address of the family, or "".
func IPOfFamily(pod *corev1.Pod, family corev1.IPFamily) string {
	for _, s := range IPs(pod) {
		ip := net.ParseIP(s)
		if ip == nil {
			continue
		}
		if (ip.To4() != nil) == (family == corev1.IPv4Protocol) {
			return s
		}
	}
	return ""
}

// FindPort resolves a Service port's targetPort in one pod: a number is
// itself (zero means the Service port), a name is looked up among the
// pod's container ports of the same protocol. Named ports may differ from
// pod to pod, which is why this is per pod.
func FindPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	switch sp.TargetPort.Type {
	case intstr.String:
		name := sp.TargetPort.StrVal
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		// Sidecars (restartable init containers) serve like containers.
		containers := pod.Spec.Containers
		for _, c := range pod.Spec.InitContainers {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				containers = append(containers[:len(containers):len(containers)], c)
			}
		}
		for _, c := range containers {
			for _, p := range c.Ports {
				pp := p.Protocol
				if pp == "" {
					pp = corev1.ProtocolTCP
				}
				if p.Name == name && pp == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	default:
		if sp.TargetPort.IntVal == 0 {
			return sp.Port, true
		}
		return sp.TargetPort.IntVal, true
	}
}

// Selected lists the pods in the Service's namespace its selector picks.
// A Service without a selector picks none: its endpoints are the user's.
func Selected(lister corelisters.PodLister, svc *corev1.Service) ([]*corev1.Pod, error) {
	if svc.Spec.Selector == nil {
		return nil, nil
	}
	return lister.Pods(svc.Namespace).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
}

// ServicesFor returns the keys (namespace/name) of the Services in the
// pod's namespace whose selector matches it.
func ServicesFor(lister corelisters.ServiceLister, pod *corev1.Pod) []string {
	svcs, err := lister.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var keys []string
	for _, s := range svcs {
		if s.Spec.Selector == nil {
			continue
		}
		if labels.SelectorFromValidatedSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			keys = append(keys, s.Namespace+"/"+s.Name)
		}
	}
	return keys
}

// Hostname is the DNS hostname a pod gets under a Service: set when the
// pod names a hostname and the Service as its subdomain, so headless
// Services can publish per-pod records.
func Hostname(pod *corev1.Pod, svc *corev1.Service) string {
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		return pod.Spec.Hostname
	}
	return ""
}
