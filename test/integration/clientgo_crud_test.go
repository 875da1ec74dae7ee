package integration

import (
	"encoding/json"
	"net"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestClientGoCreateDefaults(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)

	t.Run("pod", func(t *testing.T) {
		pod := makePod("defaults").Obj()
		pod.Spec.Containers = []corev1.Container{
			{Name: "latest", Image: "nginx:latest", Ports: []corev1.ContainerPort{{ContainerPort: 80}}},
			{Name: "untagged", Image: "nginx"},
			{Name: "tagged", Image: "nginx:1.27"},
		}
		got, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.UID == "" || got.CreationTimestamp.IsZero() || got.ResourceVersion == "" {
			t.Errorf("server metadata missing: uid=%q created=%v rv=%q", got.UID, got.CreationTimestamp, got.ResourceVersion)
		}
		if got.Generation != 1 {
			t.Errorf("generation = %d, want 1", got.Generation)
		}
		s := got.Spec
		if s.RestartPolicy != corev1.RestartPolicyAlways || s.DNSPolicy != corev1.DNSClusterFirst ||
			s.SchedulerName != "default-scheduler" || s.TerminationGracePeriodSeconds == nil || *s.TerminationGracePeriodSeconds != 30 {
			t.Errorf("pod defaults: restartPolicy=%q dnsPolicy=%q scheduler=%q grace=%v", s.RestartPolicy, s.DNSPolicy, s.SchedulerName, s.TerminationGracePeriodSeconds)
		}
		want := map[string]corev1.PullPolicy{"latest": corev1.PullAlways, "untagged": corev1.PullAlways, "tagged": corev1.PullIfNotPresent}
		for _, ctr := range s.Containers {
			if ctr.ImagePullPolicy != want[ctr.Name] {
				t.Errorf("container %s imagePullPolicy = %q, want %q", ctr.Name, ctr.ImagePullPolicy, want[ctr.Name])
			}
		}
		if p := s.Containers[0].Ports[0].Protocol; p != corev1.ProtocolTCP {
			t.Errorf("port protocol = %q, want TCP", p)
		}
		if got.Status.Phase != corev1.PodPending {
			t.Errorf("phase = %q, want Pending", got.Status.Phase)
		}
	})

	t.Run("service", func(t *testing.T) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		got, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Spec.Type != corev1.ServiceTypeClusterIP || got.Spec.SessionAffinity != corev1.ServiceAffinityNone {
			t.Errorf("type=%q sessionAffinity=%q", got.Spec.Type, got.Spec.SessionAffinity)
		}
		_, cidr, _ := net.ParseCIDR("10.43.0.0/16")
		ip := net.ParseIP(got.Spec.ClusterIP)
		if ip == nil || !cidr.Contains(ip) || got.Spec.ClusterIP == "10.43.0.1" {
			t.Errorf("clusterIP = %q, want a fresh address in 10.43.0.0/16", got.Spec.ClusterIP)
		}
		if len(got.Spec.ClusterIPs) != 1 || got.Spec.ClusterIPs[0] != got.Spec.ClusterIP {
			t.Errorf("clusterIPs = %v, want [%s]", got.Spec.ClusterIPs, got.Spec.ClusterIP)
		}
		if p := got.Spec.Ports[0]; p.Protocol != corev1.ProtocolTCP || p.TargetPort != intstr.FromInt32(80) {
			t.Errorf("port defaults: protocol=%q targetPort=%v", p.Protocol, p.TargetPort)
		}
	})

	t.Run("deployment", func(t *testing.T) {
		got, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("web", 2), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st := got.Spec.Strategy
		if st.Type != appsv1.RollingUpdateDeploymentStrategyType || st.RollingUpdate == nil ||
			st.RollingUpdate.MaxSurge.String() != "25%" || st.RollingUpdate.MaxUnavailable.String() != "25%" {
			t.Errorf("strategy = %+v", st)
		}
		if got.Spec.RevisionHistoryLimit == nil || *got.Spec.RevisionHistoryLimit != 10 {
			t.Errorf("revisionHistoryLimit = %v, want 10", got.Spec.RevisionHistoryLimit)
		}
		if got.Spec.ProgressDeadlineSeconds == nil || *got.Spec.ProgressDeadlineSeconds != 600 {
			t.Errorf("progressDeadlineSeconds = %v, want 600", got.Spec.ProgressDeadlineSeconds)
		}
		if got.Generation != 1 || got.UID == "" {
			t.Errorf("generation=%d uid=%q", got.Generation, got.UID)
		}
	})

	t.Run("configmap CRUD", func(t *testing.T) {
		cms := c.CoreV1().ConfigMaps(ns)
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "conf"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Generation != 0 {
			t.Errorf("configmap generation = %d, want 0 (no spec)", cm.Generation)
		}
		cm.Data["b"] = "2"
		upd, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if upd.ResourceVersion == cm.ResourceVersion || upd.UID != cm.UID || upd.Data["b"] != "2" {
			t.Errorf("update: rv %s→%s uid %s→%s data %v", cm.ResourceVersion, upd.ResourceVersion, cm.UID, upd.UID, upd.Data)
		}
		got, err := cms.Get(ctx, "conf", metav1.GetOptions{})
		if err != nil || got.Data["b"] != "2" {
			t.Fatalf("get after update: %v %v", got, err)
		}
		if err := cms.Delete(ctx, "conf", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = cms.Get(ctx, "conf", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}}, metav1.CreateOptions{})
		wantStatusErr(t, err, 409, metav1.StatusReasonAlreadyExists)
	})

	t.Run("cluster-scoped node and secret", func(t *testing.T) {
		node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "crud-node"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if node.Namespace != "" || node.UID == "" {
			t.Errorf("node namespace=%q uid=%q", node.Namespace, node.UID)
		}
		sec, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(sec.Data["k"]) != "v" || sec.Type != corev1.SecretTypeOpaque {
			t.Errorf("secret data=%v type=%q, want stringData merged into data and type Opaque", sec.Data, sec.Type)
		}
	})

	t.Run("generateName", func(t *testing.T) {
		cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cm.Name, "gen-") || len(cm.Name) != len("gen-")+5 {
			t.Errorf("generated name %q, want gen-xxxxx", cm.Name)
		}
		if _, err := c.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("get generated: %v", err)
		}
	})

	t.Run("dryRun creates nothing", func(t *testing.T) {
		got, err := c.CoreV1().Pods(ns).Create(ctx, makePod("dry").Obj(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "dry" || got.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			t.Errorf("dry-run answer not defaulted: %+v", got.Spec)
		}
		_, err = c.CoreV1().Pods(ns).Get(ctx, "dry", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
		svc, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dry"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		// The dry run's address must stay free: a real create may get it.
		real, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "real"}, Spec: corev1.ServiceSpec{ClusterIP: svc.Spec.ClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("dry-run address %s was not released: %v", svc.Spec.ClusterIP, err)
		}
		if real.Spec.ClusterIP != svc.Spec.ClusterIP {
			t.Errorf("clusterIP %s, want %s", real.Spec.ClusterIP, svc.Spec.ClusterIP)
		}
	})
}

func TestClientGoUpdate(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)

	t.Run("stale resourceVersion conflicts", func(t *testing.T) {
		cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "occ"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		first := cm.DeepCopy()
		first.Data = map[string]string{"who": "first"}
		if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, first, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		second := cm.DeepCopy()
		second.Data = map[string]string{"who": "second"}
		_, err = c.CoreV1().ConfigMaps(ns).Update(ctx, second, metav1.UpdateOptions{})
		st := wantStatusErr(t, err, 409, metav1.StatusReasonConflict)
		if !strings.Contains(st.Message, "the object has been modified") {
			t.Errorf("message %q", st.Message)
		}
		got, _ := c.CoreV1().ConfigMaps(ns).Get(ctx, "occ", metav1.GetOptions{})
		if got.Data["who"] != "first" {
			t.Errorf("data = %v, the losing update must change nothing", got.Data)
		}
	})

	t.Run("generation bumps on spec change only", func(t *testing.T) {
		d, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("gen", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Labels = map[string]string{"new": "label"}
		d, err = c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Generation != 1 {
			t.Errorf("after label change generation = %d, want 1", d.Generation)
		}
		d.Spec.Replicas = ptr(int32(3))
		d, err = c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Generation != 2 {
			t.Errorf("after spec change generation = %d, want 2", d.Generation)
		}
	})

	t.Run("status and spec split for deployments", func(t *testing.T) {
		d, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("split", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Status through the main resource is ignored.
		d.Status.Replicas = 7
		d.Spec.Replicas = ptr(int32(2))
		d, err = c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.Replicas != 0 || *d.Spec.Replicas != 2 {
			t.Errorf("main update: status.replicas=%d spec.replicas=%d, want 0 and 2", d.Status.Replicas, *d.Spec.Replicas)
		}
		// Spec through /status is ignored.
		d.Status.Replicas = 5
		d.Status.ObservedGeneration = d.Generation
		d.Spec.Replicas = ptr(int32(9))
		d, err = c.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.Replicas != 5 || *d.Spec.Replicas != 2 {
			t.Errorf("status update: status.replicas=%d spec.replicas=%d, want 5 and 2", d.Status.Replicas, *d.Spec.Replicas)
		}
		got, _ := c.AppsV1().Deployments(ns).Get(ctx, "split", metav1.GetOptions{})
		if got.Status.Replicas != 5 || *got.Spec.Replicas != 2 || got.Generation != 2 {
			t.Errorf("stored: status.replicas=%d spec.replicas=%d generation=%d", got.Status.Replicas, *got.Spec.Replicas, got.Generation)
		}
	})

	t.Run("status and spec split for pods", func(t *testing.T) {
		p, err := c.CoreV1().Pods(ns).Create(ctx, makePod("split").Obj(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodRunning
		p.Labels = map[string]string{"x": "y"}
		p, err = c.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodPending || p.Labels["x"] != "y" {
			t.Errorf("main update: phase=%q labels=%v", p.Status.Phase, p.Labels)
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "10.42.0.9"
		p.Spec.ActiveDeadlineSeconds = ptr(int64(100))
		p, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP != "10.42.0.9" || p.Spec.ActiveDeadlineSeconds != nil {
			t.Errorf("status update: phase=%q podIP=%q activeDeadline=%v", p.Status.Phase, p.Status.PodIP, p.Spec.ActiveDeadlineSeconds)
		}
	})

	t.Run("scale subresource", func(t *testing.T) {
		if _, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("sc-d", 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "sc-rs"}, Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "sc-rs"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "sc-rs"}}, Spec: makePod("x").Obj().Spec}}}
		if _, err := c.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "sc-sts"}, Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "sc-sts"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "sc-sts"}}, Spec: makePod("x").Obj().Spec}}}
		if _, err := c.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		type scaler struct {
			get    func() (*autoscalingv1.Scale, error)
			update func(*autoscalingv1.Scale) (*autoscalingv1.Scale, error)
			spec   func() int32
		}
		cases := map[string]scaler{
			"deployments": {
				get: func() (*autoscalingv1.Scale, error) {
					return c.AppsV1().Deployments(ns).GetScale(ctx, "sc-d", metav1.GetOptions{})
				},
				update: func(s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
					return c.AppsV1().Deployments(ns).UpdateScale(ctx, "sc-d", s, metav1.UpdateOptions{})
				},
				spec: func() int32 {
					d, _ := c.AppsV1().Deployments(ns).Get(ctx, "sc-d", metav1.GetOptions{})
					return *d.Spec.Replicas
				},
			},
			"replicasets": {
				get: func() (*autoscalingv1.Scale, error) {
					return c.AppsV1().ReplicaSets(ns).GetScale(ctx, "sc-rs", metav1.GetOptions{})
				},
				update: func(s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
					return c.AppsV1().ReplicaSets(ns).UpdateScale(ctx, "sc-rs", s, metav1.UpdateOptions{})
				},
				spec: func() int32 {
					d, _ := c.AppsV1().ReplicaSets(ns).Get(ctx, "sc-rs", metav1.GetOptions{})
					return *d.Spec.Replicas
				},
			},
			"statefulsets": {
				get: func() (*autoscalingv1.Scale, error) {
					return c.AppsV1().StatefulSets(ns).GetScale(ctx, "sc-sts", metav1.GetOptions{})
				},
				update: func(s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
					return c.AppsV1().StatefulSets(ns).UpdateScale(ctx, "sc-sts", s, metav1.UpdateOptions{})
				},
				spec: func() int32 {
					d, _ := c.AppsV1().StatefulSets(ns).Get(ctx, "sc-sts", metav1.GetOptions{})
					return *d.Spec.Replicas
				},
			},
		}
		for name, sc := range cases {
			t.Run(name, func(t *testing.T) {
				s, err := sc.get()
				if err != nil {
					t.Fatal(err)
				}
				if s.Spec.Replicas != 1 || !strings.HasPrefix(s.Status.Selector, "app=sc-") {
					t.Errorf("scale = %+v", s)
				}
				s.Spec.Replicas = 4
				out, err := sc.update(s)
				if err != nil {
					t.Fatal(err)
				}
				if out.Spec.Replicas != 4 || sc.spec() != 4 {
					t.Errorf("after UpdateScale: scale %d, object %d, want 4", out.Spec.Replicas, sc.spec())
				}
				// The first Scale's resourceVersion is stale now.
				s.Spec.Replicas = 5
				_, err = sc.update(s)
				wantStatusErr(t, err, 409, metav1.StatusReasonConflict)
			})
		}
	})

	t.Run("pods/binding", func(t *testing.T) {
		if _, err := c.CoreV1().Pods(ns).Create(ctx, makePod("bind").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "bind"}, Target: corev1.ObjectReference{Kind: "Node", Name: "n1"}}
		if err := c.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p, _ := c.CoreV1().Pods(ns).Get(ctx, "bind", metav1.GetOptions{})
		if p.Spec.NodeName != "n1" {
			t.Errorf("nodeName = %q, want n1", p.Spec.NodeName)
		}
		b.Target.Name = "n2"
		err := c.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{})
		wantStatusErr(t, err, 409, metav1.StatusReasonConflict)
		p, _ = c.CoreV1().Pods(ns).Get(ctx, "bind", metav1.GetOptions{})
		if p.Spec.NodeName != "n1" {
			t.Errorf("after second bind nodeName = %q, want n1", p.Spec.NodeName)
		}
	})
}

func TestClientGoPatch(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)

	base := makeDeployment("patch", 1)
	base.Spec.Template.Spec.Containers = []corev1.Container{{Name: "a", Image: "img-a:1"}, {Name: "b", Image: "img-b:1"}}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, base, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		typ   types.PatchType
		patch string
		check func(t *testing.T, d *appsv1.Deployment)
	}{
		{"json patch", types.JSONPatchType, `[{"op":"replace","path":"/spec/replicas","value":3},{"op":"add","path":"/metadata/labels","value":{"via":"json"}}]`,
			func(t *testing.T, d *appsv1.Deployment) {
				if *d.Spec.Replicas != 3 || d.Labels["via"] != "json" {
					t.Errorf("replicas=%d labels=%v", *d.Spec.Replicas, d.Labels)
				}
			}},
		{"merge patch", types.MergePatchType, `{"metadata":{"labels":{"via":"merge"}},"spec":{"replicas":4}}`,
			func(t *testing.T, d *appsv1.Deployment) {
				if *d.Spec.Replicas != 4 || d.Labels["via"] != "merge" {
					t.Errorf("replicas=%d labels=%v", *d.Spec.Replicas, d.Labels)
				}
			}},
		{"strategic merge merges containers by name", types.StrategicMergePatchType, `{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"img-b:2"}]}}}}`,
			func(t *testing.T, d *appsv1.Deployment) {
				cs := d.Spec.Template.Spec.Containers
				if len(cs) != 2 || cs[0].Name != "a" || cs[0].Image != "img-a:1" || cs[1].Name != "b" || cs[1].Image != "img-b:2" {
					t.Errorf("containers = %+v", cs)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.AppsV1().Deployments(ns).Patch(ctx, "patch", tc.typ, []byte(tc.patch), metav1.PatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, d)
			got, _ := c.AppsV1().Deployments(ns).Get(ctx, "patch", metav1.GetOptions{})
			tc.check(t, got)
		})
	}
	t.Run("json patch test op failing is 422", func(t *testing.T) {
		_, err := c.AppsV1().Deployments(ns).Patch(ctx, "patch", types.JSONPatchType, []byte(`[{"op":"test","path":"/spec/replicas","value":99}]`), metav1.PatchOptions{})
		wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
	})
	t.Run("patch of missing object is 404", func(t *testing.T) {
		_, err := c.AppsV1().Deployments(ns).Patch(ctx, "nope", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
	})
	t.Run("server-side apply is 415", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "patch"}, "spec": map[string]any{"replicas": 9}})
		_, err := c.AppsV1().Deployments(ns).Patch(ctx, "patch", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "test"})
		wantStatusErr(t, err, 415, metav1.StatusReasonUnsupportedMediaType)
		got, _ := c.AppsV1().Deployments(ns).Get(ctx, "patch", metav1.GetOptions{})
		if *got.Spec.Replicas == 9 {
			t.Error("rejected apply changed the object")
		}
	})
}

func TestClientGoDelete(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)
	pods := c.CoreV1().Pods(ns)

	t.Run("bound pod waits for its grace period", func(t *testing.T) {
		if _, err := pods.Create(ctx, makePod("bound").Node("n1").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(30))}); err != nil {
			t.Fatal(err)
		}
		p, err := pods.Get(ctx, "bound", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("bound pod gone at once: %v", err)
		}
		if p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
			t.Errorf("deletionTimestamp=%v grace=%v", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
		}
		// The kubelet's final delete with grace 0 removes it.
		if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Fatal(err)
		}
		_, err = pods.Get(ctx, "bound", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
	})

	t.Run("unbound pod goes at once", func(t *testing.T) {
		if _, err := pods.Create(ctx, makePod("unbound").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := pods.Delete(ctx, "unbound", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(30))}); err != nil {
			t.Fatal(err)
		}
		_, err := pods.Get(ctx, "unbound", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
	})

	t.Run("preconditions", func(t *testing.T) {
		cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pre"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for name, pre := range map[string]metav1.Preconditions{
			"uid":             {UID: ptr(types.UID("00000000-0000-0000-0000-000000000000"))},
			"resourceVersion": {ResourceVersion: ptr("1")},
		} {
			err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &pre})
			st := wantStatusErr(t, err, 409, metav1.StatusReasonConflict)
			if !strings.Contains(st.Message, "Precondition failed") {
				t.Errorf("%s: message %q", name, st.Message)
			}
		}
		if _, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "pre", metav1.GetOptions{}); err != nil {
			t.Fatalf("object gone despite failed preconditions: %v", err)
		}
		if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cm.UID, ResourceVersion: &cm.ResourceVersion}}); err != nil {
			t.Fatalf("matching preconditions: %v", err)
		}
	})

	t.Run("finalizers hold the object until removed", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "fin", Finalizers: []string{"example.com/hold"}}}
		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "fin", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "fin", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("object with finalizer gone: %v", err)
		}
		if got.DeletionTimestamp == nil {
			t.Fatal("no deletionTimestamp")
		}
		got.Finalizers = append(got.Finalizers, "example.com/another")
		_, err = c.CoreV1().ConfigMaps(ns).Update(ctx, got, metav1.UpdateOptions{})
		wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
		got.Finalizers = nil
		if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = c.CoreV1().ConfigMaps(ns).Get(ctx, "fin", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
	})

	for _, tc := range []struct {
		policy metav1.DeletionPropagation
		want   string
	}{
		{metav1.DeletePropagationOrphan, metav1.FinalizerOrphanDependents},
		{metav1.DeletePropagationForeground, metav1.FinalizerDeleteDependents},
	} {
		t.Run("propagationPolicy "+string(tc.policy), func(t *testing.T) {
			name := "prop-" + strings.ToLower(string(tc.policy))
			if _, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment(name, 1), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := c.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &tc.policy}); err != nil {
				t.Fatal(err)
			}
			d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("object gone: %v", err)
			}
			if d.DeletionTimestamp == nil || len(d.Finalizers) != 1 || d.Finalizers[0] != tc.want {
				t.Errorf("deletionTimestamp=%v finalizers=%v, want [%s]", d.DeletionTimestamp, d.Finalizers, tc.want)
			}
		})
	}

	t.Run("deletecollection with label selector", func(t *testing.T) {
		for i, tier := range []string{"web", "web", "db"} {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dc-" + string(rune('a'+i)), Labels: map[string]string{"tier": tier}}}
			if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "tier=web"}); err != nil {
			t.Fatal(err)
		}
		l, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "tier"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].Name != "dc-c" {
			t.Errorf("left: %v, want only dc-c", names(l.Items))
		}
	})

	t.Run("delete missing is 404", func(t *testing.T) {
		err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "nope", metav1.DeleteOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
		if !apierrors.IsNotFound(err) {
			t.Error("IsNotFound false")
		}
	})
}

func names(cms []corev1.ConfigMap) []string {
	out := make([]string, len(cms))
	for i, cm := range cms {
		out[i] = cm.Name
	}
	return out
}
