package resource

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// coreErrKeys reduces errors to "Type path" strings, which is what the
// tests assert: the kind of problem and where, not the message wording.
func coreErrKeys(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	slices.Sort(out)
	return out
}

func coreExpectErrs(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := coreErrKeys(errs); !slices.Equal(got, want) {
		t.Errorf("errors = %q, want %q\n(full: %v)", got, want, errs)
	}
}

// coreTestPod returns a minimal valid, defaulted pod for tests to modify.
func coreTestPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	p.Name, p.Namespace = "web", "default"
	for _, m := range mutate {
		m(p)
	}
	defaultPod(p)
	return p
}

func coreSpecPath() *field.Path { return field.NewPath("spec") }
