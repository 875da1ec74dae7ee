package resource

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CoreEvents describes core/v1 events; events.k8s.io/v1 serves the same
// objects under another shape and is described separately.
func CoreEvents() *Resource {
	return &Resource{
		Kind:           corev1.SchemeGroupVersion.WithKind("Event"),
		Plural:         "events",
		Namespaced:     true,
		ShortNames:     []string{"ev"},
		New:            func() runtime.Object { return &corev1.Event{} },
		NewList:        func() runtime.Object { return &corev1.EventList{} },
		Validate:       func(obj runtime.Object) field.ErrorList { return validateCoreEvent(obj.(*corev1.Event)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateCoreEvent(obj.(*corev1.Event)) },
		// Upstream's event table leads with LAST SEEN and puts the name
		// last, shown only with -o wide; kubectl users expect that shape.
		Columns: []metav1.TableColumnDefinition{
			{Name: "Last Seen", Type: "string", Description: "Time when this Event was last observed"},
			{Name: "Type", Type: "string", Description: "Type of this event (Normal, Warning), new types could be added in the future"},
			{Name: "Reason", Type: "string", Description: "This should be a short, machine understandable string that gives the reason for the transition into the object's current status"},
			{Name: "Object", Type: "string", Description: "The object that this event is about"},
			{Name: "Subobject", Type: "string", Priority: 1, Description: "The part of the object this event is about (a field path)"},
			{Name: "Source", Type: "string", Priority: 1, Description: "The component reporting this event"},
			{Name: "Message", Type: "string", Description: "A human-readable description of the status of this operation"},
			{Name: "First Seen", Type: "string", Priority: 1, Description: "The time at which the event was first recorded"},
			{Name: "Count", Type: "string", Priority: 1, Description: "The number of times this event has occurred"},
			{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: NameColumn.Description},
		},
		Row:    func(obj runtime.Object) []any { return coreEventRow(obj.(*corev1.Event)) },
		Fields: func(obj runtime.Object) fields.Set { return coreEventFields(obj.(*corev1.Event)) },
	}
}

// validateCoreEvent: an event about a namespaced object must live in that
// object's namespace, or namespace-scoped readers would miss it (or see
// events about objects they cannot read).
func validateCoreEvent(ev *corev1.Event) field.ErrorList {
	var errs field.ErrorList
	if ns := ev.InvolvedObject.Namespace; ns != "" && ns != ev.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), ns, "does not match event.namespace"))
	}
	if ev.Type != "" && ev.Type != corev1.EventTypeNormal && ev.Type != corev1.EventTypeWarning && ev.ReportingController != "" {
		// Only new-style events (with a reporting controller) are held to
		// the two types; old clients wrote others and upstream keeps them.
		errs = append(errs, field.NotSupported(field.NewPath("type"), ev.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
	}
	return errs
}

func coreEventRow(ev *corev1.Event) []any {
	first, last := ev.FirstTimestamp, ev.LastTimestamp
	if first.IsZero() {
		first = metav1.Time{Time: ev.EventTime.Time}
	}
	if last.IsZero() {
		last = first
	}
	count := ev.Count
	if s := ev.Series; s != nil {
		last = metav1.Time{Time: s.LastObservedTime.Time}
		count = s.Count
	}
	object := fmt.Sprintf("%s/%s", strings.ToLower(ev.InvolvedObject.Kind), ev.InvolvedObject.Name)
	return []any{
		Age(last), ev.Type, ev.Reason, object, ev.InvolvedObject.FieldPath, coreEventSource(ev),
		strings.TrimSpace(ev.Message), Age(first), int64(count), ev.Name,
	}
}

// coreEventSource renders "component, host", falling back to the newer
// reporting fields for events that only set those.
func coreEventSource(ev *corev1.Event) string {
	parts := []string{ev.Source.Component, ev.Source.Host}
	if ev.Source.Component == "" {
		parts = []string{ev.ReportingController, ev.ReportingInstance}
	}
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func coreEventFields(ev *corev1.Event) fields.Set {
	o := ev.InvolvedObject
	return fields.Set{
		"involvedObject.kind":            o.Kind,
		"involvedObject.namespace":       o.Namespace,
		"involvedObject.name":            o.Name,
		"involvedObject.uid":             string(o.UID),
		"involvedObject.apiVersion":      o.APIVersion,
		"involvedObject.resourceVersion": o.ResourceVersion,
		"involvedObject.fieldPath":       o.FieldPath,
		"reason":                         ev.Reason,
		"reportingComponent":             ev.ReportingController,
		"source":                         ev.Source.Component,
		"type":                           ev.Type,
	}
}
