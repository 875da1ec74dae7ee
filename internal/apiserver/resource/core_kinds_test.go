package resource

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestCoreKindsDescribed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		r          *Resource
		plural     string
		short      string
		namespaced bool
		status     bool
	}{
		{Namespaces(), "namespaces", "ns", false, true},
		{Pods(), "pods", "po", true, true},
		{Nodes(), "nodes", "no", false, true},
		{Services(), "services", "svc", true, true},
		{Endpoints(), "endpoints", "ep", true, false},
		{ConfigMaps(), "configmaps", "cm", true, false},
		{Secrets(), "secrets", "", true, false},
		{CoreEvents(), "events", "ev", true, false},
		{ServiceAccounts(), "serviceaccounts", "sa", true, false},
	}
	for _, c := range cases {
		t.Run(c.plural, func(t *testing.T) {
			t.Parallel()
			r := c.r
			if r.Plural != c.plural || r.Namespaced != c.namespaced || r.Status != c.status || r.Kind.Group != "" || r.Kind.Version != "v1" {
				t.Errorf("got plural %q namespaced %v status %v kind %v", r.Plural, r.Namespaced, r.Status, r.Kind)
			}
			if c.short != "" && (len(r.ShortNames) != 1 || r.ShortNames[0] != c.short) {
				t.Errorf("short names = %v, want [%s]", r.ShortNames, c.short)
			}
			obj := r.New()
			if got := obj.GetObjectKind(); got == nil {
				t.Fatal("New returned nil kind")
			}
			obj.(metav1.Object).SetName("x")
			if r.Default != nil {
				r.Default(obj)
			}
			if row := r.Row(obj); len(row) != len(r.Columns) {
				t.Errorf("row has %d cells for %d columns", len(row), len(r.Columns))
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	t.Parallel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
	r := Namespaces()
	r.PrepareCreate(ns)
	if ns.Status.Phase != corev1.NamespaceActive || len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
		t.Errorf("after create: phase %q finalizers %v", ns.Status.Phase, ns.Spec.Finalizers)
	}
	if got := r.Fields(ns)["status.phase"]; got != "Active" {
		t.Errorf("status.phase field = %q", got)
	}
	cases := []struct {
		name string
		want []string
	}{
		{"team-a", nil},
		{"team.a", []string{"FieldValueInvalid metadata.name"}},
		{"Team", []string{"FieldValueInvalid metadata.name"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coreExpectErrs(t, r.Validate(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.name}}), c.want...)
		})
	}
}

func TestNodeRow(t *testing.T) {
	t.Parallel()
	ready := func(s corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeReady, Status: s}}
	}
	cases := []struct {
		name          string
		node          corev1.Node
		status, roles string
	}{
		{"ready worker", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionTrue)}}, "Ready", "<none>"},
		{"not ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready(corev1.ConditionFalse)}}, "NotReady", "<none>"},
		{"unknown cordoned control plane", corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true"}},
			Spec:       corev1.NodeSpec{Unschedulable: true},
		}, "Unknown,SchedulingDisabled", "control-plane,etcd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			row := nodeRow(&c.node)
			if row[1] != c.status || row[2] != c.roles {
				t.Errorf("status %v roles %v, want %q %q", row[1], row[2], c.status, c.roles)
			}
		})
	}
	n := &corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}
	if got := Nodes().Fields(n)["spec.unschedulable"]; got != "true" {
		t.Errorf("spec.unschedulable = %q", got)
	}
}

func TestValidateNode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		old, new corev1.NodeSpec
		want     []string
	}{
		{"set podCIDR", corev1.NodeSpec{}, corev1.NodeSpec{PodCIDR: "10.42.1.0/24", PodCIDRs: []string{"10.42.1.0/24"}}, nil},
		{"change podCIDR", corev1.NodeSpec{PodCIDR: "10.42.1.0/24", PodCIDRs: []string{"10.42.1.0/24"}},
			corev1.NodeSpec{PodCIDR: "10.42.2.0/24", PodCIDRs: []string{"10.42.2.0/24"}}, []string{"FieldValueForbidden spec.podCIDRs"}},
		{"bad taint effect", corev1.NodeSpec{}, corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k", Effect: "Sometimes"}}}, []string{"FieldValueNotSupported spec.taints[0].effect"}},
		{"duplicate taint", corev1.NodeSpec{}, corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k", Effect: "NoSchedule"}, {Key: "k", Value: "v", Effect: "NoSchedule"}}}, []string{"FieldValueDuplicate spec.taints[1]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coreExpectErrs(t, Nodes().ValidateUpdate(&corev1.Node{Spec: c.new}, &corev1.Node{Spec: c.old}), c.want...)
		})
	}
}

func TestFormatEndpoints(t *testing.T) {
	t.Parallel()
	addrs := func(ips ...string) []corev1.EndpointAddress {
		var out []corev1.EndpointAddress
		for _, ip := range ips {
			out = append(out, corev1.EndpointAddress{IP: ip})
		}
		return out
	}
	cases := []struct {
		name    string
		subsets []corev1.EndpointSubset
		want    string
	}{
		{"none", nil, "<none>"},
		{"two", []corev1.EndpointSubset{{Addresses: addrs("10.42.0.5", "10.42.0.6"), Ports: []corev1.EndpointPort{{Port: 80}}}}, "10.42.0.5:80,10.42.0.6:80"},
		{"more", []corev1.EndpointSubset{{Addresses: addrs("10.42.0.5", "10.42.0.6", "10.42.0.7", "10.42.0.8"), Ports: []corev1.EndpointPort{{Port: 80}}}}, "10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 1 more..."},
		{"no ports", []corev1.EndpointSubset{{Addresses: addrs("10.42.0.5")}}, "10.42.0.5"},
		{"not ready ignored", []corev1.EndpointSubset{{NotReadyAddresses: addrs("10.42.0.5"), Ports: []corev1.EndpointPort{{Port: 80}}}}, "<none>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := formatEndpoints(&corev1.Endpoints{Subsets: c.subsets}); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestValidateConfigMapAndSecret(t *testing.T) {
	t.Parallel()
	yes := corePtr(true)
	cases := []struct {
		name     string
		r        *Resource
		obj, old runtime.Object
		want     []string
	}{
		{"configmap valid", ConfigMaps(), &corev1.ConfigMap{Data: map[string]string{"app.conf": "x"}}, nil, nil},
		{"configmap bad key", ConfigMaps(), &corev1.ConfigMap{Data: map[string]string{"a/b": "x"}}, nil, []string{"FieldValueInvalid data[a/b]"}},
		{"configmap key in both", ConfigMaps(), &corev1.ConfigMap{Data: map[string]string{"k": "x"}, BinaryData: map[string][]byte{"k": nil}}, nil, []string{"FieldValueInvalid binaryData[k]"}},
		{"configmap too big", ConfigMaps(), &corev1.ConfigMap{Data: map[string]string{"k": strings.Repeat("x", coreMaxDataSize)}}, nil, []string{"FieldValueTooLong data"}},
		{"configmap immutable data", ConfigMaps(), &corev1.ConfigMap{Immutable: yes, Data: map[string]string{"k": "y"}},
			&corev1.ConfigMap{Immutable: yes, Data: map[string]string{"k": "x"}}, []string{"FieldValueForbidden data"}},
		{"secret bad key", Secrets(), &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"..": nil}}, nil, []string{"FieldValueInvalid data[..]"}},
		{"tls secret needs keys", Secrets(), &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil}}, nil, []string{"FieldValueRequired data[tls.key]"}},
		{"secret type immutable", Secrets(), &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": nil, "tls.key": nil}},
			&corev1.Secret{Type: corev1.SecretTypeOpaque}, []string{"FieldValueInvalid type"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.old == nil {
				coreExpectErrs(t, c.r.Validate(c.obj), c.want...)
			} else {
				coreExpectErrs(t, c.r.ValidateUpdate(c.obj, c.old), c.want...)
			}
		})
	}
}

func TestDefaultSecret(t *testing.T) {
	t.Parallel()
	s := &corev1.Secret{StringData: map[string]string{"password": "hunter2"}}
	r := Secrets()
	r.Default(s)
	if s.Type != corev1.SecretTypeOpaque || string(s.Data["password"]) != "hunter2" || s.StringData != nil {
		t.Errorf("defaulted secret = %+v", s)
	}
	if got := r.Fields(s)["type"]; got != "Opaque" {
		t.Errorf("type field = %q", got)
	}
	if row := r.Row(s); row[1] != "Opaque" || row[2] != int64(1) {
		t.Errorf("row = %v", row)
	}
}

func TestCoreEvent(t *testing.T) {
	t.Parallel()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web.1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", UID: "u1", FieldPath: "spec.containers{app}"},
		Reason:         "Pulled", Message: "pulled image ", Type: corev1.EventTypeNormal,
		Source: corev1.EventSource{Component: "kubelet", Host: "n1"}, Count: 2,
	}
	r := CoreEvents()
	row := r.Row(ev)
	want := []any{"<unknown>", "Normal", "Pulled", "pod/web", "spec.containers{app}", "kubelet, n1", "pulled image", "<unknown>", int64(2), "web.1"}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("cell %s = %v, want %v", r.Columns[i].Name, row[i], want[i])
		}
	}
	f := r.Fields(ev)
	for k, v := range map[string]string{"involvedObject.kind": "Pod", "involvedObject.uid": "u1", "reason": "Pulled", "source": "kubelet", "type": "Normal"} {
		t.Run(k, func(t *testing.T) {
			if f[k] != v {
				t.Errorf("%s = %q, want %q", k, f[k], v)
			}
		})
	}
	ev.InvolvedObject.Namespace = "other"
	coreExpectErrs(t, r.Validate(ev), "FieldValueInvalid involvedObject.namespace")
}
