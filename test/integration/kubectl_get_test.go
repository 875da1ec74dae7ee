package integration

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlGet checks the output forms users read and scripts parse.
func TestKubectlGet(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.file("app.yaml", demoApp)
	k.ok("apply", "-f", "app.yaml")
	k.ok("run", "lone", "--image=busybox", "-n", "demo")

	clusterIP := regexp.MustCompile(`^10\.43\.\d{1,3}\.\d{1,3}$`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"wide deployments", []string{"get", "deploy", "-n", "demo", "-o", "wide"}, func(t *testing.T, out string) {
			wantColumns(t, out, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR")
			row, ok := lineStarting(out, "web")
			if !ok {
				t.Fatalf("no row for web:\n%s", out)
			}
			f := strings.Fields(row)
			if len(f) != 8 || !strings.HasSuffix(f[1], "/3") || f[5] != "web" || f[6] != "busybox" || f[7] != "app=web" {
				t.Errorf("row %q: want READY x/3, CONTAINERS web, IMAGES busybox, SELECTOR app=web", row)
			}
		}},
		{"wide services", []string{"get", "svc", "-n", "demo", "-o", "wide"}, func(t *testing.T, out string) {
			wantColumns(t, out, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR")
			row, ok := lineStarting(out, "web", "ClusterIP")
			if !ok {
				t.Fatalf("no ClusterIP row for web:\n%s", out)
			}
			f := strings.Fields(row)
			if len(f) != 7 || !clusterIP.MatchString(f[2]) || f[3] != "<none>" || f[4] != "80/TCP" || f[6] != "app=web" {
				t.Errorf("row %q: want a 10.43.x.x IP, <none>, 80/TCP, app=web", row)
			}
		}},
		{"several kinds at once", []string{"get", "deploy,rs,pods,svc", "-n", "demo", "-o", "wide"}, func(t *testing.T, out string) {
			wantContains(t, out, "deployment.apps/web", "service/web", "pod/lone")
			// Each kind prints its own wide header; the pods' ends with these.
			wantContains(t, out, "NOMINATED NODE   READINESS GATES", "CONTAINERS   IMAGES    SELECTOR")
		}},
		{"yaml", []string{"get", "deploy", "web", "-n", "demo", "-o", "yaml"}, func(t *testing.T, out string) {
			wantContains(t, out, "apiVersion: apps/v1\n", "kind: Deployment\n", "  name: web\n", "  replicas: 3\n", "  - containerPort: 8080\n")
		}},
		{"json", []string{"get", "svc", "web", "-n", "demo", "-o", "json"}, func(t *testing.T, out string) {
			var svc struct {
				Kind string
				Spec struct {
					ClusterIP string
					Ports     []struct {
						Port       int
						TargetPort string
						Protocol   string
					}
				}
			}
			if err := json.Unmarshal([]byte(out), &svc); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out)
			}
			if svc.Kind != "Service" || !clusterIP.MatchString(svc.Spec.ClusterIP) || len(svc.Spec.Ports) != 1 ||
				svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort != "http" || svc.Spec.Ports[0].Protocol != "TCP" {
				t.Errorf("service = %+v", svc)
			}
		}},
		{"jsonpath", []string{"get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"}, func(t *testing.T, out string) {
			if out != "3" {
				t.Errorf("got %q, want 3", out)
			}
		}},
		{"name", []string{"get", "deploy,svc,cm", "-n", "demo", "-o", "name"}, func(t *testing.T, out string) {
			for _, want := range []string{"deployment.apps/web", "service/web", "configmap/web-config"} {
				if !containsLine(out, want) {
					t.Errorf("no line %q in:\n%s", want, out)
				}
			}
		}},
		{"all namespaces", []string{"get", "pods", "-A"}, func(t *testing.T, out string) {
			wantColumns(t, out, "NAMESPACE", "NAME", "READY", "STATUS")
			if _, ok := lineStarting(out, "demo", "lone", "0/1", "Pending"); !ok {
				t.Errorf("no row \"demo lone 0/1 Pending\":\n%s", out)
			}
		}},
		{"category all", []string{"get", "all", "-n", "demo"}, func(t *testing.T, out string) {
			wantContains(t, out, "pod/lone", "service/web", "deployment.apps/web")
			if strings.Contains(out, "configmap/") {
				t.Errorf("config maps are not in category all:\n%s", out)
			}
		}},
		{"short names", []string{"get", "po,deploy,svc,cm", "-n", "demo", "-o", "name"}, func(t *testing.T, out string) {
			for _, want := range []string{"pod/lone", "deployment.apps/web", "service/web", "configmap/web-config"} {
				if !containsLine(out, want) {
					t.Errorf("no line %q in:\n%s", want, out)
				}
			}
		}},
		{"namespace short name", []string{"get", "ns", "demo"}, func(t *testing.T, out string) {
			if _, ok := lineStarting(out, "demo", "Active"); !ok {
				t.Errorf("no row \"demo Active\":\n%s", out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, k.in(t).ok(tc.args...))
		})
	}
}

// TestKubectlDescribe checks that describe finds and prints the fields a
// user looks for first.
func TestKubectlDescribe(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	k.file("app.yaml", demoApp)
	k.ok("apply", "-f", "app.yaml")
	ip := k.ok("get", "svc", "web", "-n", "demo", "-o", "jsonpath={.spec.clusterIP}")

	tests := []struct {
		name string
		args []string
		want []*regexp.Regexp
	}{
		{"deployment", []string{"describe", "deployment", "web", "-n", "demo"}, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^Name:\s+web$`),
			regexp.MustCompile(`(?m)^Namespace:\s+demo$`),
			regexp.MustCompile(`(?m)^Selector:\s+app=web$`),
			regexp.MustCompile(`(?m)^Replicas:\s+3 desired \| \d+ updated \| \d+ total \| \d+ available \| \d+ unavailable$`),
			regexp.MustCompile(`(?m)^StrategyType:\s+RollingUpdate$`),
			regexp.MustCompile(`(?m)^\s+Image:\s+busybox$`),
			regexp.MustCompile(`(?m)^\s+Port:\s+8080/TCP \(http\)$`),
		}},
		{"service", []string{"describe", "svc", "web", "-n", "demo"}, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^Name:\s+web$`),
			regexp.MustCompile(`(?m)^Selector:\s+app=web$`),
			regexp.MustCompile(`(?m)^Type:\s+ClusterIP$`),
			regexp.MustCompile(`(?m)^IP:\s+` + regexp.QuoteMeta(ip) + `$`),
			regexp.MustCompile(`(?m)^Port:\s+<unset>\s+80/TCP$`),
			regexp.MustCompile(`(?m)^TargetPort:\s+http/TCP$`),
		}},
		{"namespace", []string{"describe", "ns", "demo"}, []*regexp.Regexp{
			regexp.MustCompile(`(?m)^Name:\s+demo$`),
			regexp.MustCompile(`(?m)^Status:\s+Active$`),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := k.in(t).ok(tc.args...)
			for _, re := range tc.want {
				if !re.MatchString(out) {
					t.Errorf("output does not match %s:\n%s", re, out)
				}
			}
		})
	}
}

// wantColumns fails unless out's first line is a header holding cols in
// order.
func wantColumns(t *testing.T, out string, cols ...string) {
	t.Helper()
	header, _, _ := strings.Cut(out, "\n")
	rest := header
	for _, c := range cols {
		i := strings.Index(rest, c)
		if i < 0 {
			t.Errorf("header %q lacks %s (want columns %q in order)", header, c, cols)
			return
		}
		rest = rest[i+len(c):]
	}
}

// containsLine reports whether out has a line equal to want.
func containsLine(out, want string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
