package resource

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testPriorityClass(name string, value int32) *schedulingv1.PriorityClass {
	return &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
}

func TestPriorityClassValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pc   *schedulingv1.PriorityClass
		want []string
	}{
		{"user", testPriorityClass("high", 1000), nil},
		{"user at limit", testPriorityClass("top", 1000000000), nil},
		{"user above limit", testPriorityClass("too-high", 1000000001), []string{"value"}},
		{"negative", testPriorityClass("low", -5), nil},
		{"system cluster critical", testPriorityClass("system-cluster-critical", 2000000000), nil},
		{"system node critical", testPriorityClass("system-node-critical", 2000001000), nil},
		{"system wrong value", testPriorityClass("system-node-critical", 5), []string{"metadata.name"}},
		{"system unknown", testPriorityClass("system-special", 5), []string{"metadata.name"}},
		{"system global default", func() *schedulingv1.PriorityClass {
			pc := testPriorityClass("system-cluster-critical", 2000000000)
			pc.GlobalDefault = true
			return pc
		}(), []string{"metadata.name"}},
		{"bad preemption", func() *schedulingv1.PriorityClass {
			pc := testPriorityClass("p", 1)
			pc.PreemptionPolicy = ptr.To(corev1.PreemptionPolicy("Sometimes"))
			return pc
		}(), []string{"preemptionPolicy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(PriorityClasses(), tt.pc), tt.want...)
		})
	}
}

func TestPriorityClassDefaultAndUpdate(t *testing.T) {
	t.Parallel()
	r := PriorityClasses()
	old := testPriorityClass("high", 1000)
	r.Default(old)
	if *old.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Fatalf("preemptionPolicy = %v, want PreemptLowerPriority", *old.PreemptionPolicy)
	}
	tests := []struct {
		name string
		mut  func(*schedulingv1.PriorityClass)
		want []string
	}{
		{"description", func(pc *schedulingv1.PriorityClass) { pc.Description = "for web" }, nil},
		{"global default", func(pc *schedulingv1.PriorityClass) { pc.GlobalDefault = true }, nil},
		{"value", func(pc *schedulingv1.PriorityClass) { pc.Value = 999 }, []string{"value"}},
		{"preemption", func(pc *schedulingv1.PriorityClass) { pc.PreemptionPolicy = ptr.To(corev1.PreemptNever) }, []string{"preemptionPolicy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := old.DeepCopy()
			tt.mut(obj)
			wlAssertFields(t, wlUpdate(r, obj, old), tt.want...)
		})
	}
}

func TestPriorityClassRow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pc   *schedulingv1.PriorityClass
		want []any
	}{
		{"unset policy", testPriorityClass("high", 1000), []any{"high", int64(1000), false, "<unknown>", "<unset>"}},
		{"default", func() *schedulingv1.PriorityClass {
			pc := testPriorityClass("normal", 0)
			pc.GlobalDefault = true
			pc.PreemptionPolicy = ptr.To(corev1.PreemptNever)
			return pc
		}(), []any{"normal", int64(0), true, "<unknown>", "Never"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertRow(t, PriorityClasses(), tt.pc, tt.want)
		})
	}
}
