package envvars

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, Ports: ports},
	}
}

func port(name string, p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: proto}
}

// vars turns name/value pairs into the expected list.
func vars(kv ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestServiceEnv(t *testing.T) {
	kubernetes := svc("default", "kubernetes", "10.0.0.1", port("https", 443, corev1.ProtocolTCP))
	kubernetesVars := vars(
		"KUBERNETES_SERVICE_HOST", "10.0.0.1",
		"KUBERNETES_SERVICE_PORT", "443",
		"KUBERNETES_SERVICE_PORT_HTTPS", "443",
		"KUBERNETES_PORT", "tcp://10.0.0.1:443",
		"KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO", "tcp",
		"KUBERNETES_PORT_443_TCP_PORT", "443",
		"KUBERNETES_PORT_443_TCP_ADDR", "10.0.0.1",
	)
	tests := []struct {
		name      string
		services  []*corev1.Service
		namespace string
		links     bool
		want      []corev1.EnvVar
	}{
		{
			name:      "no services",
			namespace: "ns",
			links:     true,
		},
		{
			name:      "master service always given even without links",
			services:  []*corev1.Service{kubernetes, svc("ns", "web", "10.0.0.9", port("", 80, ""))},
			namespace: "ns",
			links:     false,
			want:      kubernetesVars,
		},
		{
			name: "named and unnamed ports, protocols, dash in name",
			services: []*corev1.Service{svc("ns", "my-db", "10.0.0.7",
				port("", 5432, ""),
				port("metrics-port", 9187, corev1.ProtocolTCP),
				port("dns", 53, corev1.ProtocolUDP),
			)},
			namespace: "ns",
			links:     true,
			want: vars(
				"MY_DB_SERVICE_HOST", "10.0.0.7",
				"MY_DB_SERVICE_PORT", "5432",
				"MY_DB_SERVICE_PORT_METRICS_PORT", "9187",
				"MY_DB_SERVICE_PORT_DNS", "53",
				"MY_DB_PORT", "tcp://10.0.0.7:5432",
				"MY_DB_PORT_5432_TCP", "tcp://10.0.0.7:5432",
				"MY_DB_PORT_5432_TCP_PROTO", "tcp",
				"MY_DB_PORT_5432_TCP_PORT", "5432",
				"MY_DB_PORT_5432_TCP_ADDR", "10.0.0.7",
				"MY_DB_PORT_9187_TCP", "tcp://10.0.0.7:9187",
				"MY_DB_PORT_9187_TCP_PROTO", "tcp",
				"MY_DB_PORT_9187_TCP_PORT", "9187",
				"MY_DB_PORT_9187_TCP_ADDR", "10.0.0.7",
				"MY_DB_PORT_53_UDP", "udp://10.0.0.7:53",
				"MY_DB_PORT_53_UDP_PROTO", "udp",
				"MY_DB_PORT_53_UDP_PORT", "53",
				"MY_DB_PORT_53_UDP_ADDR", "10.0.0.7",
			),
		},
		{
			name:      "IPv6 cluster IP is bracketed in URLs only",
			services:  []*corev1.Service{svc("ns", "v6", "fd00::5", port("", 80, corev1.ProtocolSCTP))},
			namespace: "ns",
			links:     true,
			want: vars(
				"V6_SERVICE_HOST", "fd00::5",
				"V6_SERVICE_PORT", "80",
				"V6_PORT", "sctp://[fd00::5]:80",
				"V6_PORT_80_SCTP", "sctp://[fd00::5]:80",
				"V6_PORT_80_SCTP_PROTO", "sctp",
				"V6_PORT_80_SCTP_PORT", "80",
				"V6_PORT_80_SCTP_ADDR", "fd00::5",
			),
		},
		{
			name: "headless, external-name and other namespaces skipped; name order",
			services: []*corev1.Service{
				svc("ns", "zeta", "10.0.0.3"),
				svc("ns", "headless", corev1.ClusterIPNone, port("", 80, "")),
				svc("ns", "external", "", port("", 80, "")),
				svc("other", "elsewhere", "10.0.0.4", port("", 80, "")),
				svc("default", "not-master", "10.0.0.5", port("", 80, "")),
				svc("ns", "alpha", "10.0.0.2"),
			},
			namespace: "ns",
			links:     true,
			want:      vars("ALPHA_SERVICE_HOST", "10.0.0.2", "ZETA_SERVICE_HOST", "10.0.0.3"),
		},
		{
			name:      "own namespace kubernetes service shadows the master one",
			services:  []*corev1.Service{svc("ns", "kubernetes", "10.0.0.8"), kubernetes},
			namespace: "ns",
			links:     true,
			want:      vars("KUBERNETES_SERVICE_HOST", "10.0.0.8"),
		},
		{
			name:      "shadowing does not depend on order",
			services:  []*corev1.Service{kubernetes, svc("ns", "kubernetes", "10.0.0.8")},
			namespace: "ns",
			links:     true,
			want:      vars("KUBERNETES_SERVICE_HOST", "10.0.0.8"),
		},
		{
			name:      "own kubernetes service ignored without links",
			services:  []*corev1.Service{svc("ns", "kubernetes", "10.0.0.8"), kubernetes},
			namespace: "ns",
			links:     false,
			want:      kubernetesVars,
		},
		{
			name:      "pod in default sees all default services with links",
			services:  []*corev1.Service{svc("default", "web", "10.0.0.6"), kubernetes},
			namespace: "default",
			links:     true,
			want:      append(kubernetesVars[:len(kubernetesVars):len(kubernetesVars)], vars("WEB_SERVICE_HOST", "10.0.0.6")...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ServiceEnv(tt.services, tt.namespace, tt.links)
			checkEnv(t, got, tt.want)
		})
	}
}

// checkEnv fails t unless got equals want, listing both one per line.
func checkEnv(t *testing.T, got, want []corev1.EnvVar) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 || reflect.DeepEqual(got, want) {
		return
	}
	t.Errorf("env mismatch\ngot:\n%s\nwant:\n%s", formatEnv(got), formatEnv(want))
}

func formatEnv(env []corev1.EnvVar) string {
	var b strings.Builder
	for _, v := range env {
		fmt.Fprintf(&b, "  %s=%q\n", v.Name, v.Value)
	}
	return b.String()
}
