package integration

import (
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClientGoAdmission(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)

	t.Run("missing namespace is 404", func(t *testing.T) {
		_, err := c.CoreV1().ConfigMaps("does-not-exist").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		st := wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
		if st.Details == nil || st.Details.Kind != "namespaces" || st.Details.Name != "does-not-exist" {
			t.Errorf("details %+v, want namespaces does-not-exist", st.Details)
		}
	})

	t.Run("terminating namespace is 403", func(t *testing.T) {
		doomed := newNamespace(t, c)
		if err := c.CoreV1().Namespaces().Delete(ctx, doomed, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := c.CoreV1().Namespaces().Get(ctx, doomed, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("namespace with spec.finalizers gone at once: %v", err)
		}
		if got.Status.Phase != corev1.NamespaceTerminating || got.DeletionTimestamp == nil {
			t.Errorf("phase=%q deletionTimestamp=%v, want Terminating", got.Status.Phase, got.DeletionTimestamp)
		}
		_, err = c.CoreV1().ConfigMaps(doomed).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "late"}}, metav1.CreateOptions{})
		st := wantStatusErr(t, err, 403, metav1.StatusReasonForbidden)
		if !strings.Contains(st.Message, "because it is being terminated") {
			t.Errorf("message %q", st.Message)
		}
	})

	t.Run("system namespaces cannot be deleted", func(t *testing.T) {
		err := c.CoreV1().Namespaces().Delete(ctx, "kube-system", metav1.DeleteOptions{})
		wantStatusErr(t, err, 403, metav1.StatusReasonForbidden)
	})

	invalid := []struct {
		name   string
		create func() error
		fields []string // field paths the causes must name
	}{
		{"bad name", func() error {
			_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "Bad_Name"}}, metav1.CreateOptions{})
			return err
		}, []string{"metadata.name"}},
		{"service name not a DNS label", func() error {
			_, err := c.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a.b"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
			return err
		}, []string{"metadata.name"}},
		{"bad label", func() error {
			_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ok", Labels: map[string]string{"bad key!": "v", "k": "bad value!"}}}, metav1.CreateOptions{})
			return err
		}, []string{"metadata.labels"}},
		{"missing container image", func() error {
			_, err := c.CoreV1().Pods(ns).Create(ctx, makePod("noimage").Image("").Obj(), metav1.CreateOptions{})
			return err
		}, []string{"spec.containers[0].image"}},
	}
	for _, tc := range invalid {
		t.Run("422 "+tc.name, func(t *testing.T) {
			st := wantStatusErr(t, tc.create(), 422, metav1.StatusReasonInvalid)
			if st.Details == nil || len(st.Details.Causes) == 0 {
				t.Fatalf("no causes in %+v", st)
			}
			for _, f := range tc.fields {
				found := false
				for _, cause := range st.Details.Causes {
					found = found || strings.HasPrefix(cause.Field, f)
				}
				if !found {
					t.Errorf("causes %+v name no field %s", st.Details.Causes, f)
				}
			}
		})
	}

	t.Run("422 immutable deployment selector", func(t *testing.T) {
		d, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("immut", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		d.Spec.Template.Labels = map[string]string{"app": "other"}
		_, err = c.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		st := wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
		if !strings.Contains(st.Message, "spec.selector") || !strings.Contains(st.Message, "immutable") {
			t.Errorf("message %q, want spec.selector ... immutable", st.Message)
		}
	})

	t.Run("422 forbidden pod spec update", func(t *testing.T) {
		p, err := c.CoreV1().Pods(ns).Create(ctx, makePod("immut").Obj(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
		_, err = c.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
		st := wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
		if st.Details == nil || len(st.Details.Causes) == 0 || !strings.HasPrefix(st.Details.Causes[0].Field, "spec") {
			t.Errorf("causes %+v", st.Details)
		}
		// The image may change.
		p, _ = c.CoreV1().Pods(ns).Get(ctx, "immut", metav1.GetOptions{})
		p.Spec.Containers[0].Image = "nginx:1.28"
		if _, err := c.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Errorf("image update refused: %v", err)
		}
	})

	t.Run("bootstrap objects", func(t *testing.T) {
		for _, n := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			got, err := c.CoreV1().Namespaces().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				t.Errorf("namespace %s: %v", n, err)
				continue
			}
			if got.Status.Phase != corev1.NamespaceActive || got.Labels["kubernetes.io/metadata.name"] != n {
				t.Errorf("namespace %s: phase=%q labels=%v", n, got.Status.Phase, got.Labels)
			}
		}
		svc, err := c.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.ClusterIP != "10.43.0.1" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
			t.Errorf("kubernetes service: clusterIP=%s ports=%+v", svc.Spec.ClusterIP, svc.Spec.Ports)
		}
	})
}

func TestClientGoPersistence(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	ctx := testCtx(t)
	ns := newNamespace(t, cp.Client)
	svcOf := func(name, ip string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	taken := map[string]string{"10.43.0.1": "kubernetes"}
	for _, name := range []string{"s1", "s2", "s3"} {
		s, err := cp.Client.CoreV1().Services(ns).Create(ctx, svcOf(name, ""), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		taken[s.Spec.ClusterIP] = name
	}
	cm, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keep"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cp.Client.AppsV1().Deployments(ns).Create(ctx, makeDeployment("keep", 2), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cp.Restart()
	c := cp.Client

	t.Run("objects survive", func(t *testing.T) {
		got, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "keep", metav1.GetOptions{})
		if err != nil || got.UID != cm.UID || got.Data["k"] != "v" || got.ResourceVersion != cm.ResourceVersion {
			t.Errorf("configmap after restart: %+v %v", got, err)
		}
		gd, err := c.AppsV1().Deployments(ns).Get(ctx, "keep", metav1.GetOptions{})
		if err != nil || gd.UID != d.UID || *gd.Spec.Replicas != 2 || gd.Generation != 1 {
			t.Errorf("deployment after restart: %+v %v", gd, err)
		}
	})

	t.Run("new services get free addresses", func(t *testing.T) {
		for i := range 5 {
			s, err := c.CoreV1().Services(ns).Create(ctx, svcOf("after-"+string(rune('a'+i)), ""), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if owner, dup := taken[s.Spec.ClusterIP]; dup {
				t.Errorf("service %s got %s, already held by %s", s.Name, s.Spec.ClusterIP, owner)
			}
			if net.ParseIP(s.Spec.ClusterIP) == nil {
				t.Errorf("bad clusterIP %q", s.Spec.ClusterIP)
			}
			taken[s.Spec.ClusterIP] = s.Name
		}
	})

	t.Run("taken address is 422", func(t *testing.T) {
		for ip, owner := range taken {
			_, err := c.CoreV1().Services(ns).Create(ctx, svcOf("dup-"+strings.ReplaceAll(ip, ".", "-"), ip), metav1.CreateOptions{})
			st := wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
			if !strings.Contains(st.Message, "allocated") && !strings.Contains(st.Message, "already") {
				t.Errorf("%s (held by %s): message %q", ip, owner, st.Message)
			}
		}
	})

	t.Run("deleting a service frees its address", func(t *testing.T) {
		s1, _ := c.CoreV1().Services(ns).Get(ctx, "s1", metav1.GetOptions{})
		if err := c.CoreV1().Services(ns).Delete(ctx, "s1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := c.CoreV1().Services(ns).Create(ctx, svcOf("reuse", s1.Spec.ClusterIP), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("freed address %s refused: %v", s1.Spec.ClusterIP, err)
		}
		if s.Spec.ClusterIP != s1.Spec.ClusterIP {
			t.Errorf("clusterIP %s, want %s", s.Spec.ClusterIP, s1.Spec.ClusterIP)
		}
	})
}
