package resource

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Helpers shared by the workload kinds (apps/v1 and batch/v1): the pod
// template rules, selector rules and table cells they have in common.

// wlWideColumns are the CONTAINERS, IMAGES and SELECTOR columns upstream
// shows with -o wide on most workloads.
var wlWideColumns = []metav1.TableColumnDefinition{
	{Name: "Containers", Type: "string", Priority: 1, Description: "Names of each container in the template."},
	{Name: "Images", Type: "string", Priority: 1, Description: "Images referenced by each container in the template."},
	{Name: "Selector", Type: "string", Priority: 1, Description: "Label selector of the workload's pods."},
}

// wlContainerCells joins container names and images with commas, the way
// kubectl's wide output lists them.
func wlContainerCells(containers []corev1.Container) (names, images string) {
	n := make([]string, len(containers))
	im := make([]string, len(containers))
	for i, c := range containers {
		n[i], im[i] = c.Name, c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// wlSelectorString renders a selector as the scale subresource and the
// Deployment table do: the parsed selector's String, "" when empty and
// "<invalid>" when it cannot be parsed (only possible for stored objects
// written before validation tightened).
func wlSelectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<invalid>"
	}
	return s.String()
}

// wlValidateSelector checks a workload selector: present, non-empty,
// well-formed and matching the template's labels. An empty selector would
// adopt every pod in the namespace, which is why upstream refuses it.
func wlValidateSelector(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, kind string, specPath *field.Path) field.ErrorList {
	path := specPath.Child("selector")
	if sel == nil {
		return field.ErrorList{field.Required(path, "")}
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, path)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(path, sel, "empty selector is invalid for "+kind))
	}
	if len(errs) > 0 {
		return errs
	}
	errs = append(errs, wlSelectorMatchesTemplate(sel, tmpl, specPath)...)
	return errs
}

// wlSelectorMatchesTemplate reports a template whose labels the selector
// does not select: the controller would create pods it never counts.
func wlSelectorMatchesTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, specPath *field.Path) field.ErrorList {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || s.Matches(labels.Set(tmpl.Labels)) {
		return nil
	}
	return field.ErrorList{field.Invalid(specPath.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`")}
}

// wlValidateLongRunningTemplate checks a template for controllers that keep
// pods running forever (Deployment, ReplicaSet, DaemonSet, StatefulSet):
// the pod must restart Always and may not carry a deadline, since either
// would let a pod finish and the controller would recreate it in a loop.
func wlValidateLongRunningTemplate(tmpl *corev1.PodTemplateSpec, kind string, tmplPath *field.Path) field.ErrorList {
	errs := validatePodTemplateSpec(tmpl, tmplPath)
	if tmpl.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tmplPath.Child("spec", "restartPolicy"), tmpl.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if tmpl.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tmplPath.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return errs
}

// wlValidateNonNegative is ValidateNonnegativeField for an optional value.
func wlValidateNonNegative(v *int32, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	return apivalidation.ValidateNonnegativeField(int64(*v), path)
}

// wlValidateIntOrPercent checks a maxSurge/maxUnavailable value: a
// non-negative integer or a percentage of at most 100%.
func wlValidateIntOrPercent(v *intstr.IntOrString, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	switch v.Type {
	case intstr.String:
		n, ok := wlParsePercent(v.StrVal)
		if !ok {
			return field.ErrorList{field.Invalid(path, v.StrVal, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")}
		}
		if n > 100 {
			return field.ErrorList{field.Invalid(path, v.StrVal, "must not be greater than 100%")}
		}
	case intstr.Int:
		return apivalidation.ValidateNonnegativeField(int64(v.IntValue()), path)
	}
	return nil
}

// wlIsZero reports whether an int-or-percent is 0 or "0%" (unset counts as
// zero: defaulting fills real values before validation runs).
func wlIsZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.String {
		n, ok := wlParsePercent(v.StrVal)
		return ok && n == 0
	}
	return v.IntValue() == 0
}

// wlParsePercent parses "NN%" into NN.
func wlParsePercent(s string) (int, bool) {
	digits, ok := strings.CutSuffix(s, "%")
	if !ok || digits == "" || len(digits) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// wlValidateSurge checks a rolling update's maxSurge/maxUnavailable pair.
// Both zero would stall a rollout forever: nothing may go down and
// nothing extra may come up.
func wlValidateSurge(maxUnavailable, maxSurge *intstr.IntOrString, path *field.Path) field.ErrorList {
	errs := wlValidateIntOrPercent(maxUnavailable, path.Child("maxUnavailable"))
	errs = append(errs, wlValidateIntOrPercent(maxSurge, path.Child("maxSurge"))...)
	if wlIsZero(maxUnavailable) && wlIsZero(maxSurge) {
		errs = append(errs, field.Invalid(path.Child("maxUnavailable"), wlIntOrPercentValue(maxUnavailable), "may not be 0 when `maxSurge` is 0"))
	}
	return errs
}

// wlIntOrPercentValue returns the value to show in an error message.
func wlIntOrPercentValue(v *intstr.IntOrString) any {
	if v == nil {
		return nil
	}
	if v.Type == intstr.String {
		return v.StrVal
	}
	return v.IntValue()
}

// wlImmutableSelector rejects a changed selector: apps/v1 made selectors
// immutable because a change would orphan the pods the old one selected.
func wlImmutableSelector(sel, old *metav1.LabelSelector, specPath *field.Path) field.ErrorList {
	return apivalidation.ValidateImmutableField(sel, old, specPath.Child("selector"))
}

// wlDeref returns *p or def when p is nil.
func wlDeref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// wlControllerName renders an object's controller as "kind.group/name"
// (e.g. "daemonset.apps/fluentd"), or "<none>".
func wlControllerName(meta *metav1.ObjectMeta) string {
	ref := metav1.GetControllerOfNoCopy(meta)
	if ref == nil {
		return "<none>"
	}
	kind := strings.ToLower(ref.Kind)
	if group, _, ok := strings.Cut(ref.APIVersion, "/"); ok && group != "" {
		kind += "." + group
	}
	return fmt.Sprintf("%s/%s", kind, ref.Name)
}
