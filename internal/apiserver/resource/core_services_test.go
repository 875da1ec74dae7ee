package resource

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func coreTestService(mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Port: 80}},
	}}
	s.Name, s.Namespace = "web", "default"
	if mutate != nil {
		mutate(s)
	}
	defaultService(s)
	return s
}

func TestDefaultService(t *testing.T) {
	t.Parallel()
	plain := coreTestService(func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.20" })
	np := coreTestService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	named := coreTestService(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") })
	checks := []struct {
		name      string
		got, want any
	}{
		{"type", plain.Spec.Type, corev1.ServiceTypeClusterIP},
		{"sessionAffinity", plain.Spec.SessionAffinity, corev1.ServiceAffinityNone},
		{"protocol", plain.Spec.Ports[0].Protocol, corev1.ProtocolTCP},
		{"targetPort from port", plain.Spec.Ports[0].TargetPort, intstr.FromInt32(80)},
		{"named targetPort kept", named.Spec.Ports[0].TargetPort, intstr.FromString("http")},
		{"internalTrafficPolicy", *plain.Spec.InternalTrafficPolicy, corev1.ServiceInternalTrafficPolicyCluster},
		{"no externalTrafficPolicy for ClusterIP", plain.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicy("")},
		{"externalTrafficPolicy for NodePort", np.Spec.ExternalTrafficPolicy, corev1.ServiceExternalTrafficPolicyCluster},
		{"ipFamilyPolicy", *plain.Spec.IPFamilyPolicy, corev1.IPFamilyPolicySingleStack},
		{"ipFamilies", len(plain.Spec.IPFamilies) == 1 && plain.Spec.IPFamilies[0] == corev1.IPv4Protocol, true},
		{"clusterIPs mirrors clusterIP", len(plain.Spec.ClusterIPs) == 1 && plain.Spec.ClusterIPs[0] == "10.43.0.20", true},
		{"no families before allocation", np.Spec.IPFamilyPolicy == nil, true},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestValidateService(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []string
	}{
		{"valid", nil, nil},
		{"ports required", func(s *corev1.Service) { s.Spec.Ports = nil }, []string{"FieldValueRequired spec.ports"}},
		{"headless needs no ports", func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "None" }, nil},
		{"names required with two ports", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Port: 80}, {Port: 443}}
		}, []string{"FieldValueRequired spec.ports[0].name", "FieldValueRequired spec.ports[1].name"}},
		{"duplicate port names", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "http", Port: 443}}
		}, []string{"FieldValueDuplicate spec.ports[1].name"}},
		{"port out of range", func(s *corev1.Service) { s.Spec.Ports[0].Port = 70000 }, []string{"FieldValueInvalid spec.ports[0].port", "FieldValueInvalid spec.ports[0].targetPort"}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, []string{"FieldValueForbidden spec.ports[0].nodePort"}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Magic" }, []string{"FieldValueNotSupported spec.type"}},
		{"externalName required", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, []string{"FieldValueRequired spec.externalName"}},
		{"externalName valid", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com."
			s.Spec.Ports = nil
		}, nil},
		{"bad clusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.300" }, []string{"FieldValueInvalid spec.clusterIPs[0]"}},
		{"externalTrafficPolicy on ClusterIP", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, []string{"FieldValueInvalid spec.externalTrafficPolicy"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			coreExpectErrs(t, validateService(coreTestService(c.mutate)), c.want...)
		})
	}
}

func TestValidateServiceUpdate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []string
	}{
		{"selector change", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "v2"} }, nil},
		{"clusterIP change", func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.43.0.21"
			s.Spec.ClusterIPs = []string{"10.43.0.21"}
		}, []string{"FieldValueInvalid spec.clusterIP", "FieldValueInvalid spec.clusterIPs[0]"}},
		{"to ExternalName clears clusterIP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			old := coreTestService(func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.20" })
			updated := old.DeepCopy()
			c.mutate(updated)
			coreExpectErrs(t, validateServiceUpdate(updated, old), c.want...)
		})
	}
}

func TestServiceRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                   string
		svc                    *corev1.Service
		clusterIP, extIP, port string
	}{
		{"cluster ip", coreTestService(func(s *corev1.Service) { s.Spec.ClusterIP = "10.43.0.20" }), "10.43.0.20", "<none>", "80/TCP"},
		{"node port", coreTestService(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "10.43.0.20"
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
		}), "10.43.0.20", "<none>", "80:30080/TCP,53/UDP"},
		{"pending load balancer", coreTestService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }), "<none>", "<pending>", "80/TCP"},
		{"external name", coreTestService(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "example.com"
			s.Spec.Ports = nil
		}), "<none>", "example.com", "<none>"},
		{"headless", coreTestService(func(s *corev1.Service) { s.Spec.ClusterIP = "None" }), "None", "<none>", "80/TCP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			row := serviceRow(c.svc)
			if row[0] != "web" || row[2] != c.clusterIP || row[3] != c.extIP || row[4] != c.port {
				t.Errorf("row = %v, want name web, cluster-ip %q, external-ip %q, ports %q", row, c.clusterIP, c.extIP, c.port)
			}
			if row[6] != "app=web" && c.svc.Spec.Selector != nil {
				t.Errorf("selector cell = %v, want app=web", row[6])
			}
		})
	}
}
