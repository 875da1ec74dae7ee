package resource

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Length limits upstream puts on events.k8s.io events, so that a chatty
// component cannot fill etcd through the event stream.
const (
	eventMaxReportingInstance = 128
	eventMaxAction            = 128
	eventMaxReason            = 128
	eventMaxNote              = 1024
)

// Events describes events.k8s.io/v1 Events. Upstream serves these from the
// same storage as core/v1 Events and prints them with the same table, so
// the table here reuses the core one; the short name "ev" is on both, as
// upstream's discovery lists it for both groups.
func Events() *Resource {
	core := CoreEvents()
	return &Resource{
		Kind:       eventsv1.SchemeGroupVersion.WithKind("Event"),
		Plural:     "events",
		Namespaced: true,
		ShortNames: []string{"ev"},
		New:        func() runtime.Object { return &eventsv1.Event{} },
		NewList:    func() runtime.Object { return &eventsv1.EventList{} },
		Validate:   func(obj runtime.Object) field.ErrorList { return validateEvent(obj.(*eventsv1.Event)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			ev, o := obj.(*eventsv1.Event), old.(*eventsv1.Event)
			return append(validateEvent(ev), validateEventUpdate(ev, o)...)
		},
		Columns: core.Columns,
		Row:     func(obj runtime.Object) []any { return coreEventRow(eventAsCore(obj.(*eventsv1.Event))) },
		Fields:  func(obj runtime.Object) fields.Set { return eventFields(obj.(*eventsv1.Event)) },
	}
}

// validateEvent holds events.k8s.io events to the strict shape that API
// introduced: who reported what, when, and nothing in the deprecated
// fields that only core/v1 clients write.
func validateEvent(ev *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	// Events about cluster-scoped objects are written to default (or
	// kube-system); otherwise the event must sit with its object.
	if ns := ev.Regarding.Namespace; ns == "" {
		if ev.Namespace != metav1.NamespaceDefault && ev.Namespace != metav1.NamespaceSystem {
			errs = append(errs, field.Invalid(field.NewPath("regarding", "namespace"), ns, "does not match event.namespace"))
		}
	} else if ns != ev.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("regarding", "namespace"), ns, "does not match event.namespace"))
	}
	if ev.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	errs = append(errs, eventRequiredMax(ev.ReportingController, 0, field.NewPath("reportingController"))...)
	if ev.ReportingController != "" {
		for _, msg := range validation.IsQualifiedName(ev.ReportingController) {
			errs = append(errs, field.Invalid(field.NewPath("reportingController"), ev.ReportingController, msg))
		}
	}
	errs = append(errs, eventRequiredMax(ev.ReportingInstance, eventMaxReportingInstance, field.NewPath("reportingInstance"))...)
	errs = append(errs, eventRequiredMax(ev.Action, eventMaxAction, field.NewPath("action"))...)
	errs = append(errs, eventRequiredMax(ev.Reason, eventMaxReason, field.NewPath("reason"))...)
	if len(ev.Note) > eventMaxNote {
		errs = append(errs, field.TooLong(field.NewPath("note"), "", eventMaxNote))
	}
	if ev.Type != corev1.EventTypeNormal && ev.Type != corev1.EventTypeWarning {
		errs = append(errs, field.NotSupported(field.NewPath("type"), ev.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
	}
	if s := ev.Series; s != nil {
		if s.Count < 2 {
			errs = append(errs, field.Invalid(field.NewPath("series", "count"), s.Count, "should be at least 2"))
		}
		if s.LastObservedTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("series", "lastObservedTime"), ""))
		}
	}
	for _, d := range []struct {
		name string
		set  bool
	}{
		{"deprecatedFirstTimestamp", !ev.DeprecatedFirstTimestamp.IsZero()},
		{"deprecatedLastTimestamp", !ev.DeprecatedLastTimestamp.IsZero()},
		{"deprecatedCount", ev.DeprecatedCount != 0},
		{"deprecatedSource", ev.DeprecatedSource.Component != "" || ev.DeprecatedSource.Host != ""},
	} {
		if d.set {
			errs = append(errs, field.Invalid(field.NewPath(d.name), "", "needs to be unset"))
		}
	}
	return errs
}

// eventRequiredMax reports an empty value, or one longer than max (when
// max > 0).
func eventRequiredMax(v string, max int, path *field.Path) field.ErrorList {
	switch {
	case v == "":
		return field.ErrorList{field.Required(path, "")}
	case max > 0 && len(v) > max:
		return field.ErrorList{field.Invalid(path, "", fmt.Sprintf("can have at most %d characters", max))}
	}
	return nil
}

// validateEventUpdate: an event records something that happened; only its
// series (how often it recurred) may grow.
func validateEventUpdate(ev, old *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct {
		name     string
		new, old any
	}{
		{"regarding", ev.Regarding, old.Regarding},
		{"related", ev.Related, old.Related},
		{"eventTime", ev.EventTime, old.EventTime},
		{"reportingController", ev.ReportingController, old.ReportingController},
		{"reportingInstance", ev.ReportingInstance, old.ReportingInstance},
		{"action", ev.Action, old.Action},
		{"reason", ev.Reason, old.Reason},
		{"note", ev.Note, old.Note},
		{"type", ev.Type, old.Type},
	} {
		errs = append(errs, apivalidation.ValidateImmutableField(f.new, f.old, field.NewPath(f.name))...)
	}
	return errs
}

// eventAsCore maps an events.k8s.io event onto the core/v1 shape, field by
// field as upstream's conversion does, so both APIs print alike.
func eventAsCore(ev *eventsv1.Event) *corev1.Event {
	c := &corev1.Event{
		ObjectMeta:          ev.ObjectMeta,
		InvolvedObject:      ev.Regarding,
		Reason:              ev.Reason,
		Message:             ev.Note,
		Source:              ev.DeprecatedSource,
		FirstTimestamp:      ev.DeprecatedFirstTimestamp,
		LastTimestamp:       ev.DeprecatedLastTimestamp,
		Count:               ev.DeprecatedCount,
		Type:                ev.Type,
		EventTime:           ev.EventTime,
		Related:             ev.Related,
		Action:              ev.Action,
		ReportingController: ev.ReportingController,
		ReportingInstance:   ev.ReportingInstance,
	}
	if ev.Series != nil {
		c.Series = &corev1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
	} else if c.Count == 0 {
		// A new-style event without a series happened once.
		c.Count = 1
	}
	return c
}

// eventFields are the selectable fields under their events.k8s.io names
// (upstream maps them onto the core ones).
func eventFields(ev *eventsv1.Event) fields.Set {
	r := ev.Regarding
	return fields.Set{
		"regarding.kind":            r.Kind,
		"regarding.namespace":       r.Namespace,
		"regarding.name":            r.Name,
		"regarding.uid":             string(r.UID),
		"regarding.apiVersion":      r.APIVersion,
		"regarding.resourceVersion": r.ResourceVersion,
		"regarding.fieldPath":       r.FieldPath,
		"reason":                    ev.Reason,
		"reportingController":       ev.ReportingController,
		"type":                      ev.Type,
	}
}
