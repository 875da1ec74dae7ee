package integration

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// startAPIOnly starts a control plane without the controller manager and
// scheduler, so that what a test sees is the API server's own doing (no
// garbage collector removing finalizers, no controller writing status).
func startAPIOnly(t *testing.T) *testutil.ControlPlane {
	t.Helper()
	return testutil.StartControlPlane(t, func(c *server.Config) {
		c.Disable = append(c.Disable, "controller-manager", "scheduler")
	})
}

// nsSeq makes namespace names unique within the test binary.
var nsSeq atomic.Int64

// newNamespace creates a fresh namespace for one (sub)test.
func newNamespace(t *testing.T, c kubernetes.Interface) string {
	t.Helper()
	name := fmt.Sprintf("it-%d", nsSeq.Add(1))
	_, err := c.CoreV1().Namespaces().Create(testCtx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// testCtx is a context that ends with the test or after a minute.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wantStatusErr fails unless err is an API status error with code and
// reason, and returns its Status for further checks.
func wantStatusErr(t *testing.T, err error, code int32, reason metav1.StatusReason) metav1.Status {
	t.Helper()
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		t.Fatalf("want API status error %d %s, got %v", code, reason, err)
	}
	st := se.Status()
	if st.Code != code || st.Reason != reason {
		t.Fatalf("want %d %s, got %d %s: %s", code, reason, st.Code, st.Reason, st.Message)
	}
	return st
}

// podBuilder builds test pods.
type podBuilder struct{ p *corev1.Pod }

func makePod(name string) *podBuilder {
	return &podBuilder{p: &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}}
}

func (b *podBuilder) Labels(kv ...string) *podBuilder {
	if b.p.Labels == nil {
		b.p.Labels = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		b.p.Labels[kv[i]] = kv[i+1]
	}
	return b
}
func (b *podBuilder) Node(n string) *podBuilder  { b.p.Spec.NodeName = n; return b }
func (b *podBuilder) Image(i string) *podBuilder { b.p.Spec.Containers[0].Image = i; return b }
func (b *podBuilder) Finalizers(f ...string) *podBuilder {
	b.p.Finalizers = f
	return b
}
func (b *podBuilder) Obj() *corev1.Pod { return b.p.DeepCopy() }

// makeDeployment returns a minimal valid Deployment selecting app=name.
func makeDeployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }
