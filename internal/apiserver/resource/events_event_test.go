package resource

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testEvent(mut func(*eventsv1.Event)) *eventsv1.Event {
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "web.17f", Namespace: "default"},
		EventTime:           metav1.NewMicroTime(time.Now().Add(-2 * time.Minute)),
		ReportingController: "skiff.io/scheduler",
		ReportingInstance:   "scheduler-node-1",
		Action:              "Binding",
		Reason:              "Scheduled",
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web"},
		Note:                "Successfully assigned default/web to node-1 ",
		Type:                corev1.EventTypeNormal,
	}
	mut(ev)
	return ev
}

func TestEventValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*eventsv1.Event)
		want []string
	}{
		{"valid", func(*eventsv1.Event) {}, nil},
		{"cluster object in default", func(ev *eventsv1.Event) { ev.Regarding = corev1.ObjectReference{Kind: "Node", Name: "node-1"} }, nil},
		{"cluster object elsewhere", func(ev *eventsv1.Event) {
			ev.Namespace = "apps"
			ev.Regarding = corev1.ObjectReference{Kind: "Node", Name: "node-1"}
		}, []string{"regarding.namespace"}},
		{"namespace mismatch", func(ev *eventsv1.Event) { ev.Regarding.Namespace = "other" }, []string{"regarding.namespace"}},
		{"no event time", func(ev *eventsv1.Event) { ev.EventTime = metav1.MicroTime{} }, []string{"eventTime"}},
		{"missing reporter", func(ev *eventsv1.Event) { ev.ReportingController, ev.ReportingInstance = "", "" }, []string{"reportingController", "reportingInstance"}},
		{"bad reporter", func(ev *eventsv1.Event) { ev.ReportingController = "no spaces allowed" }, []string{"reportingController"}},
		{"long action and reason", func(ev *eventsv1.Event) {
			ev.Action, ev.Reason = strings.Repeat("a", 129), strings.Repeat("r", 129)
		}, []string{"action", "reason"}},
		{"long note", func(ev *eventsv1.Event) { ev.Note = strings.Repeat("n", 1025) }, []string{"note"}},
		{"bad type", func(ev *eventsv1.Event) { ev.Type = "Error" }, []string{"type"}},
		{"series", func(ev *eventsv1.Event) { ev.Series = &eventsv1.EventSeries{Count: 1} }, []string{"series.count", "series.lastObservedTime"}},
		{"deprecated fields", func(ev *eventsv1.Event) {
			ev.DeprecatedCount = 3
			ev.DeprecatedSource = corev1.EventSource{Component: "kubelet"}
		}, []string{"deprecatedCount", "deprecatedSource"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, Events().Validate(testEvent(tt.mut)), tt.want...)
		})
	}
}

func TestEventValidateUpdate(t *testing.T) {
	t.Parallel()
	old := testEvent(func(*eventsv1.Event) {})
	tests := []struct {
		name string
		mut  func(*eventsv1.Event)
		want []string
	}{
		{"series grows", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NowMicro()}
		}, nil},
		{"note rewritten", func(ev *eventsv1.Event) { ev.Note = "something else" }, []string{"note"}},
		{"reason and type", func(ev *eventsv1.Event) { ev.Reason, ev.Type = "Other", corev1.EventTypeWarning }, []string{"reason", "type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := old.DeepCopy()
			tt.mut(obj)
			wlAssertFields(t, Events().ValidateUpdate(obj, old), tt.want...)
		})
	}
}

func TestEventRowAndFields(t *testing.T) {
	t.Parallel()
	seen := metav1.NewMicroTime(time.Now().Add(-30 * time.Second))
	tests := []struct {
		name string
		mut  func(*eventsv1.Event)
		want []any
	}{
		{"single", func(*eventsv1.Event) {}, []any{"2m", "Normal", "Scheduled", "pod/web", "", "skiff.io/scheduler, scheduler-node-1",
			"Successfully assigned default/web to node-1", "2m", int64(1), "web.17f"}},
		{"series", func(ev *eventsv1.Event) {
			ev.Series = &eventsv1.EventSeries{Count: 4, LastObservedTime: seen}
		}, []any{"30s", "Normal", "Scheduled", "pod/web", "", "skiff.io/scheduler, scheduler-node-1",
			"Successfully assigned default/web to node-1", "2m", int64(4), "web.17f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertRow(t, Events(), testEvent(tt.mut), tt.want)
		})
	}
	t.Run("fields", func(t *testing.T) {
		t.Parallel()
		f := Events().Fields(testEvent(func(*eventsv1.Event) {}))
		for k, want := range map[string]string{"regarding.kind": "Pod", "regarding.name": "web", "reason": "Scheduled", "reportingController": "skiff.io/scheduler", "type": "Normal"} {
			if f[k] != want {
				t.Errorf("%s = %q, want %q", k, f[k], want)
			}
		}
	})
}
