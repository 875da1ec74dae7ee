package integration

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlApply walks client-side apply through its three outcomes:
// created, unchanged, and configured by a strategic merge patch computed
// from the last-applied annotation.
func TestKubectlApply(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.file("app.yaml", demoApp)
	k.file("app4.yaml", strings.Replace(demoApp, "replicas: 3", "replicas: 4", 1))

	steps := []struct {
		name, file string
		want       []string
	}{
		{"create", "app.yaml", []string{
			"namespace/demo created", "configmap/web-config created", "deployment.apps/web created", "service/web created",
		}},
		{"again", "app.yaml", []string{
			"namespace/demo unchanged", "configmap/web-config unchanged", "deployment.apps/web unchanged", "service/web unchanged",
		}},
		{"scale up in the file", "app4.yaml", []string{
			"namespace/demo unchanged", "configmap/web-config unchanged", "deployment.apps/web configured", "service/web unchanged",
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out := k.in(t).ok("apply", "-f", s.file)
			if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(s.want, "\n") {
				t.Errorf("apply printed:\n%s\nwant:\n%s", out, strings.Join(s.want, "\n"))
			}
		})
	}
	if got := k.ok("get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"); got != "4 2" {
		t.Errorf("replicas and generation = %q, want \"4 2\"", got)
	}
	d, err := cp.Client.AppsV1().Deployments("demo").Get(testCtx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if la := d.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; !strings.Contains(la, `"replicas":4`) {
		t.Errorf("last-applied annotation = %q, want it to record replicas 4", la)
	}
	if p := d.Spec.Template.Spec.Containers[0].Ports[0]; p.Name != "http" || p.ContainerPort != 8080 || p.Protocol != corev1.ProtocolTCP {
		t.Errorf("container port = %+v, want http 8080/TCP", p)
	}
}

// TestKubectlApplyValidation: a misspelt field is an error the user sees,
// naming the field, and nothing is created; --validate=false drops it.
func TestKubectlApplyValidation(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.file("bad.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  replicass: 3
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers:
      - name: app
        image: busybox
`)

	t.Run("rejected", func(t *testing.T) {
		k := k.in(t)
		errOut := k.fails("apply", "-f", "bad.yaml")
		wantContains(t, errOut, "replicass")
		if !strings.Contains(errOut, "unknown field") {
			t.Errorf("error does not say the field is unknown:\n%s", errOut)
		}
		_, err := cp.Client.AppsV1().Deployments("default").Get(testCtx(t), "typo", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("deployment after rejected apply: err = %v, want NotFound", err)
		}
	})
	t.Run("validate=false", func(t *testing.T) {
		k := k.in(t)
		res := k.run("apply", "--validate=false", "-f", "bad.yaml")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "deployment.apps/typo created" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want deployment.apps/typo created", res.code, res.stdout, res.stderr)
		}
		// The unknown field is dropped and replicas takes its default.
		if got := k.ok("get", "deploy", "typo", "-o", "jsonpath={.spec.replicas}"); got != "1" {
			t.Errorf("replicas = %q, want 1 (the default)", got)
		}
		if got := k.ok("get", "deploy", "typo", "-o", "jsonpath={.spec}"); strings.Contains(got, "replicass") {
			t.Errorf("unknown field stored in spec: %s", got)
		}
	})
}
