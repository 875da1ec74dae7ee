package integration

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlModify runs the imperative commands that change an object,
// each followed by a read of what the server stored.
func TestKubectlModify(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.file("app.yaml", demoApp)
	k.ok("apply", "-f", "app.yaml")

	// Steps run in order: each starts from the state the last one left.
	steps := []struct {
		name     string
		args     []string
		wantOut  string // the line kubectl prints
		jsonpath string // then read back from deploy/web
		want     string
	}{
		{"label", []string{"label", "deploy", "web", "tier=front"}, "deployment.apps/web labeled",
			"{.metadata.labels.tier}", "front"},
		{"label overwrite", []string{"label", "deploy", "web", "tier=back", "--overwrite"}, "deployment.apps/web labeled",
			"{.metadata.labels.tier}", "back"},
		{"label removal", []string{"label", "deploy", "web", "tier-"}, "deployment.apps/web unlabeled",
			"{.metadata.labels}", `{"app":"web"}`},
		{"annotate", []string{"annotate", "deploy", "web", "owner=alice"}, "deployment.apps/web annotated",
			"{.metadata.annotations.owner}", "alice"},
		{"annotate overwrite", []string{"annotate", "deploy", "web", "owner=bob", "--overwrite"}, "deployment.apps/web annotated",
			"{.metadata.annotations.owner}", "bob"},
		{"annotate removal", []string{"annotate", "deploy", "web", "owner-"}, "deployment.apps/web annotated",
			"{.metadata.annotations.owner}", ""},
		{"json patch", []string{"patch", "deploy", "web", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":2}]`},
			"deployment.apps/web patched", "{.spec.replicas}", "2"},
		{"merge patch", []string{"patch", "deploy", "web", "--type=merge", "-p", `{"spec":{"minReadySeconds":7}}`},
			"deployment.apps/web patched", "{.spec.minReadySeconds}", "7"},
		{"strategic merge patch adds a container by name", []string{"patch", "deploy", "web", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"nginx"}]}}}}`},
			"deployment.apps/web patched", "{.spec.template.spec.containers[*].image}", "nginx busybox"},
		{"strategic merge patch with no change", []string{"patch", "deploy", "web", "--type=strategic", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"nginx"}]}}}}`},
			"deployment.apps/web patched (no change)", "{.spec.minReadySeconds}", "7"},
		{"scale", []string{"scale", "deploy/web", "--replicas=5"}, "deployment.apps/web scaled",
			"{.spec.replicas}", "5"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			k := k.in(t)
			args := append([]string{"-n", "demo"}, s.args...)
			if out := strings.TrimSpace(k.ok(args...)); out != s.wantOut {
				t.Errorf("printed %q, want %q", out, s.wantOut)
			}
			if got := k.ok("get", "deploy", "web", "-n", "demo", "-o", "jsonpath="+s.jsonpath); got != s.want {
				t.Errorf("%s = %q, want %q", s.jsonpath, got, s.want)
			}
		})
	}

	t.Run("label without overwrite", func(t *testing.T) {
		k := k.in(t)
		k.ok("label", "-n", "demo", "cm", "web-config", "tier=front")
		errOut := k.fails("label", "-n", "demo", "cm", "web-config", "tier=back")
		wantContains(t, errOut, "'tier' already has a value (front), and --overwrite is false")
	})

	t.Run("replace", func(t *testing.T) {
		k := k.in(t)
		cm := k.ok("get", "cm", "web-config", "-n", "demo", "-o", "yaml")
		k.file("cm.yaml", strings.Replace(cm, "greeting: hello", "greeting: goodbye", 1))
		if out := strings.TrimSpace(k.ok("replace", "-f", "cm.yaml")); out != "configmap/web-config replaced" {
			t.Errorf("printed %q", out)
		}
		if got := k.ok("get", "cm", "web-config", "-n", "demo", "-o", "jsonpath={.data.greeting}"); got != "goodbye" {
			t.Errorf("greeting = %q, want goodbye", got)
		}
		// The file still holds the old resourceVersion: a second replace
		// is a conflict, as upstream's optimistic concurrency requires.
		errOut := k.fails("replace", "-f", "cm.yaml")
		wantContains(t, errOut, "Operation cannot be fulfilled on configmaps \"web-config\"")
	})

	t.Run("delete -f", func(t *testing.T) {
		k := k.in(t)
		// Without the Namespace document: deleting a namespace waits for
		// the namespace controller, which is tested elsewhere.
		docs := strings.SplitN(demoApp, "---\n", 2)
		k.file("contents.yaml", docs[1])
		out := k.ok("delete", "-f", "contents.yaml")
		for _, want := range []string{
			`configmap "web-config" deleted`, `deployment.apps "web" deleted`, `service "web" deleted`,
		} {
			wantContains(t, out, want)
		}
		_, err := cp.Client.CoreV1().Services("demo").Get(testCtx(t), "web", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("service after delete -f: err = %v, want NotFound", err)
		}
	})
}

// TestKubectlCreate runs the generators under `kubectl create` and `run`,
// which send typed objects (protobuf) rather than the user's YAML.
func TestKubectlCreate(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)

	tests := []struct {
		name     string
		args     []string
		wantOut  string
		get      []string // then `kubectl get <get> -o jsonpath=...`
		jsonpath string
		want     string
	}{
		{"namespace", []string{"create", "namespace", "team"}, "namespace/team created",
			[]string{"ns", "team"}, "{.status.phase}", "Active"},
		{"configmap", []string{"create", "configmap", "x", "--from-literal=a=1", "--from-literal=b=2"}, "configmap/x created",
			[]string{"cm", "x"}, "{.data.a},{.data.b}", "1,2"},
		{"secret", []string{"create", "secret", "generic", "creds", "--from-literal=password=hunter2"}, "secret/creds created",
			[]string{"secret", "creds"}, "{.type} {.data.password}", "Opaque aHVudGVyMg=="},
		{"deployment", []string{"create", "deployment", "api", "--image=nginx", "--replicas=2"}, "deployment.apps/api created",
			[]string{"deploy", "api"}, "{.spec.replicas} {.spec.selector.matchLabels.app}", "2 api"},
		{"pod", []string{"run", "solo", "--image=busybox"}, "pod/solo created",
			[]string{"pod", "solo"}, "{.spec.containers[0].image} {.metadata.labels.run}", "busybox solo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := k.in(t)
			if out := strings.TrimSpace(k.ok(tc.args...)); out != tc.wantOut {
				t.Errorf("printed %q, want %q", out, tc.wantOut)
			}
			args := append([]string{"get"}, tc.get...)
			if got := k.ok(append(args, "-o", "jsonpath="+tc.jsonpath)...); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.jsonpath, got, tc.want)
			}
		})
	}

	t.Run("pod is pending without a node", func(t *testing.T) {
		if out := k.in(t).ok("get", "pod", "solo"); !hasRow(out, "solo", "0/1", "Pending") {
			t.Errorf("want solo 0/1 Pending:\n%s", out)
		}
	})

	t.Run("delete configmap", func(t *testing.T) {
		k := k.in(t)
		out := strings.TrimSpace(k.ok("delete", "cm", "x"))
		if !strings.HasPrefix(out, `configmap "x" deleted`) {
			t.Errorf("printed %q, want configmap \"x\" deleted", out)
		}
		errOut := k.fails("get", "cm", "x")
		wantContains(t, errOut, `Error from server (NotFound): configmaps "x" not found`)
	})
}

// hasRow reports whether out has a line whose columns begin with cols.
func hasRow(out string, cols ...string) bool {
	_, ok := lineStarting(out, cols...)
	return ok
}
