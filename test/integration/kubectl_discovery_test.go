package integration

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlDiscovery covers the commands that read the server's
// discovery and OpenAPI documents rather than objects.
func TestKubectlDiscovery(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)

	t.Run("api-resources", func(t *testing.T) {
		t.Parallel()
		out := k.in(t).ok("api-resources")
		wantColumns(t, out, "NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND")
		for _, row := range [][]string{
			{"pods", "po", "v1", "true", "Pod"},
			{"services", "svc", "v1", "true", "Service"},
			{"configmaps", "cm", "v1", "true", "ConfigMap"},
			{"namespaces", "ns", "v1", "false", "Namespace"},
			{"nodes", "no", "v1", "false", "Node"},
			{"deployments", "deploy", "apps/v1", "true", "Deployment"},
			{"replicasets", "rs", "apps/v1", "true", "ReplicaSet"},
			{"secrets", "v1", "true", "Secret"},
		} {
			if !hasRow(out, row...) {
				t.Errorf("no row %q in:\n%s", row, out)
			}
		}
	})

	t.Run("api-versions", func(t *testing.T) {
		t.Parallel()
		out := k.in(t).ok("api-versions")
		for _, gv := range []string{"v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1"} {
			if !containsLine(out, gv) {
				t.Errorf("no line %q in:\n%s", gv, out)
			}
		}
	})

	t.Run("version", func(t *testing.T) {
		t.Parallel()
		res := k.in(t).run("version")
		if res.code != 0 || strings.TrimSpace(res.stderr) != "" {
			// The client's version comes from client-go's
			// k8s.io/client-go/pkg/version, set only by -ldflags -X.
			t.Errorf("exit %d, stderr:\n%s", res.code, res.stderr)
		}
		// kubectl warns on stderr when the minor versions differ by more
		// than one, and fails when it cannot parse its own version.
		if !regexp.MustCompile(`(?m)^Client Version: v1\.\d+\.\d+`).MatchString(res.stdout) {
			t.Errorf("no released client version:\n%s", res.stdout)
		}
		if !regexp.MustCompile(`(?m)^Server Version: v1\.\d+\.\d+`).MatchString(res.stdout) {
			t.Errorf("no server version:\n%s", res.stdout)
		}
	})

	t.Run("cluster-info", func(t *testing.T) {
		t.Parallel()
		out := k.in(t).ok("cluster-info")
		if !regexp.MustCompile(`Kubernetes control plane.* is running at .*https://127\.0\.0\.1:\d+`).MatchString(out) {
			t.Errorf("cluster-info:\n%s", out)
		}
	})

	tests := []struct {
		name, field string
		want        []string
	}{
		{"explain livenessProbe", "pod.spec.containers.livenessProbe", []string{
			"KIND:       Pod", "FIELD: livenessProbe <Probe>", "Periodic probe of container liveness", "initialDelaySeconds",
		}},
		{"explain strategy", "deployment.spec.strategy", []string{
			"GROUP:      apps", "KIND:       Deployment", "FIELD: strategy <DeploymentStrategy>", "rollingUpdate", "Recreate",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantContains(t, k.in(t).ok("explain", tc.field), tc.want...)
		})
	}
}

// TestKubectlErrors checks the messages and exit codes of failed commands.
func TestKubectlErrors(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.ok("create", "configmap", "taken")
	k.file("taken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: taken\n")

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"not found", []string{"get", "pod", "nosuch"},
			[]string{`Error from server (NotFound): pods "nosuch" not found`}},
		{"already exists", []string{"create", "-f", "taken.yaml"},
			[]string{`Error from server (AlreadyExists): error when creating "taken.yaml": configmaps "taken" already exists`}},
		{"already exists from a generator", []string{"create", "configmap", "taken"},
			[]string{`error: failed to create configmap: configmaps "taken" already exists`}},
		{"invalid name", []string{"create", "configmap", "Bad_Name"},
			[]string{`ConfigMap "Bad_Name" is invalid`, `metadata.name: Invalid value: "Bad_Name"`, "RFC 1123"}},
		{"invalid namespace name", []string{"create", "namespace", "a.b"},
			[]string{`Namespace "a.b" is invalid`, `metadata.name: Invalid value: "a.b"`}},
		{"unknown resource type", []string{"get", "frobs"},
			[]string{`the server doesn't have a resource type "frobs"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := k.in(t).run(tc.args...)
			if res.code != 1 {
				t.Errorf("exit code %d, want 1", res.code)
			}
			wantContains(t, res.stderr, tc.want...)
		})
	}
}

// TestKubectlFindsLocalKubeconfig: with no --kubeconfig, no $KUBECONFIG and
// no ~/.kube/config, `skiff kubectl` uses the local server's admin
// kubeconfig under $SKIFF_DATA_DIR.
func TestKubectlFindsLocalKubeconfig(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)

	t.Run("data dir", func(t *testing.T) {
		k := newCLI(t, cp)
		k.kubeconfig = ""
		k.env = append(k.env, "SKIFF_DATA_DIR="+cp.DataDir)
		out := k.ok("get", "ns")
		if !hasRow(out, "kube-system", "Active") {
			t.Errorf("no kube-system row:\n%s", out)
		}
	})
	t.Run("empty data dir", func(t *testing.T) {
		k := newCLI(t, cp)
		k.kubeconfig = ""
		k.env = append(k.env, "SKIFF_DATA_DIR="+filepath.Join(t.TempDir(), "none"))
		k.fails("get", "ns")
	})
}
