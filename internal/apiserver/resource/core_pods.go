package resource

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Upstream's wording, kept verbatim because clients and people grep for it.
const podUpdateForbidden = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"

// Pods describes core/v1 pods.
func Pods() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Pod"),
		Plural:     "pods",
		Namespaced: true,
		ShortNames: []string{"po"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &corev1.Pod{} },
		NewList:    func() runtime.Object { return &corev1.PodList{} },
		Default:    func(obj runtime.Object) { defaultPod(obj.(*corev1.Pod)) },
		PrepareCreate: func(obj runtime.Object) {
			prepareCreatePod(obj.(*corev1.Pod))
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validatePod(obj.(*corev1.Pod)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePodUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
		},
		Columns:        podColumns,
		Row:            func(obj runtime.Object) []any { return podRow(obj.(*corev1.Pod)) },
		Fields:         func(obj runtime.Object) fields.Set { return podFields(obj.(*corev1.Pod)) },
		Generation:     true, // upstream counts pod spec changes since 1.33
		Status:         true,
		Binding:        true,
		GracefulDelete: func(obj runtime.Object, requested *int64) *int64 { return podGracePeriod(obj.(*corev1.Pod), requested) },
		Connect:        podConnect(),
	}
}

// defaultPod applies upstream's pod defaulting: the spec defaults every
// template gets, plus those upstream applies only to pods themselves.
func defaultPod(pod *corev1.Pod) {
	defaultPodSpec(&pod.Spec)
	if pod.Spec.HostNetwork {
		// On the host's network the container port is the host port.
		for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range cs {
				for j := range cs[i].Ports {
					if cs[i].Ports[j].HostPort == 0 {
						cs[i].Ports[j].HostPort = cs[i].Ports[j].ContainerPort
					}
				}
			}
		}
	}
	// A limit without a request means "request what you limit"; the
	// scheduler and QoS classing both depend on requests being filled.
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			r := &cs[i].Resources
			for name, lim := range r.Limits {
				if _, ok := r.Requests[name]; !ok {
					if r.Requests == nil {
						r.Requests = corev1.ResourceList{}
					}
					r.Requests[name] = lim.DeepCopy()
				}
			}
		}
	}
}

// prepareCreatePod does what upstream's admission and create strategy do
// to a new pod: service account and priority, then a fresh Pending status
// (default tolerations are the server's admission, as their durations are
// flags). It defaults first so the QoS class sees requests
// filled from limits whatever order the server calls these in.
func prepareCreatePod(pod *corev1.Pod) {
	defaultPod(pod)
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "default"
		pod.Spec.DeprecatedServiceAccount = "default"
	}
	// With a class named, priority comes from resolving it elsewhere; set
	// here it would conflict with the class's value.
	if pod.Spec.Priority == nil && pod.Spec.PriorityClassName == "" {
		pod.Spec.Priority = corePtr(int32(0))
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: podQOSClass(&pod.Spec)}
}

// podQOSClass classes a pod as upstream does, from its CPU and memory
// requests and limits: none anywhere is BestEffort; every container
// limiting both, with requests equal to limits, is Guaranteed.
func podQOSClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	qosNames := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	add := func(to corev1.ResourceList, from corev1.ResourceList) int {
		found := 0
		for _, name := range qosNames {
			q, ok := from[name]
			if !ok || q.Sign() <= 0 {
				continue
			}
			found++
			sum := to[name]
			sum.Add(q)
			to[name] = sum
		}
		return found
	}
	guaranteed := true
	if pr := spec.Resources; pr != nil && (len(pr.Requests) > 0 || len(pr.Limits) > 0) {
		// Pod-level resources, when given, decide the class alone.
		add(requests, pr.Requests)
		guaranteed = add(limits, pr.Limits) == len(qosNames)
	} else {
		for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for _, c := range cs {
				add(requests, c.Resources.Requests)
				if add(limits, c.Resources.Limits) != len(qosNames) {
					guaranteed = false
				}
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed && len(requests) == len(limits) {
		for name, req := range requests {
			if lim := limits[name]; lim.Cmp(req) != 0 {
				return corev1.PodQOSBurstable
			}
		}
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// validatePod adds to validatePodSpec what upstream requires only of pods.
func validatePod(pod *corev1.Pod) field.ErrorList {
	spec := field.NewPath("spec")
	errs := validatePodSpec(&pod.Spec, spec)
	for _, part := range []struct {
		name string
		cs   []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range part.cs {
			if c.Image == "" {
				errs = append(errs, field.Required(spec.Child(part.name).Index(i).Child("image"), ""))
			}
		}
	}
	return errs
}

// validatePodUpdate validates the new pod and then checks that only the
// fields upstream lets change in place did change: everything else needs
// the pod recreated, and nodeName changes only through pods/binding.
func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	errs := validatePod(pod)
	spec := field.NewPath("spec")

	if pod.Spec.ActiveDeadlineSeconds != nil {
		if old.Spec.ActiveDeadlineSeconds != nil && *pod.Spec.ActiveDeadlineSeconds > *old.Spec.ActiveDeadlineSeconds {
			errs = append(errs, field.Invalid(spec.Child("activeDeadlineSeconds"), *pod.Spec.ActiveDeadlineSeconds, "must be less than or equal to previous value"))
		}
	} else if old.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Invalid(spec.Child("activeDeadlineSeconds"), pod.Spec.ActiveDeadlineSeconds, "must not update from a positive integer to nil value"))
	}

	// Take the mutable fields from the new spec into a copy of the old;
	// any difference left is a forbidden change.
	mutated := old.Spec.DeepCopy()
	if len(mutated.Containers) == len(pod.Spec.Containers) {
		for i := range mutated.Containers {
			mutated.Containers[i].Image = pod.Spec.Containers[i].Image
		}
	}
	if len(mutated.InitContainers) == len(pod.Spec.InitContainers) {
		for i := range mutated.InitContainers {
			mutated.InitContainers[i].Image = pod.Spec.InitContainers[i].Image
		}
	}
	mutated.ActiveDeadlineSeconds = pod.Spec.ActiveDeadlineSeconds
	if tolerationsOnlyAdded(old.Spec.Tolerations, pod.Spec.Tolerations) {
		mutated.Tolerations = pod.Spec.Tolerations
	}
	if g := old.Spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		if n := pod.Spec.TerminationGracePeriodSeconds; n != nil && *n == 1 {
			mutated.TerminationGracePeriodSeconds = n
		}
	}
	if !apiequality.Semantic.DeepEqual(*mutated, pod.Spec) {
		errs = append(errs, field.Forbidden(spec, podUpdateForbidden))
	}
	return errs
}

// tolerationsOnlyAdded reports whether every old toleration survives in
// the new list; a NoExecute toleration may only shorten its time.
func tolerationsOnlyAdded(old, updated []corev1.Toleration) bool {
	for _, o := range old {
		found := false
		for _, n := range updated {
			if o.Key != n.Key || o.Operator != n.Operator || o.Value != n.Value || o.Effect != n.Effect {
				continue
			}
			switch {
			case o.TolerationSeconds == nil && n.TolerationSeconds == nil:
				found = true
			case o.TolerationSeconds != nil && n.TolerationSeconds != nil && *n.TolerationSeconds <= *o.TolerationSeconds:
				found = true
			}
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// podGracePeriod follows upstream: a pod no kubelet runs (unscheduled or
// already finished) has nothing to stop and goes at once; otherwise the
// request wins over the spec, and 0 means delete now.
func podGracePeriod(pod *corev1.Pod, requested *int64) *int64 {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	switch {
	case requested != nil:
		grace = *requested
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		grace = *pod.Spec.TerminationGracePeriodSeconds
		if grace < 0 {
			// Old objects may hold a negative period; upstream treats it as 1.
			grace = 1
		}
	}
	if grace <= 0 {
		return nil
	}
	return &grace
}

func podFields(pod *corev1.Pod) fields.Set {
	return fields.Set{
		"spec.nodeName":            pod.Spec.NodeName,
		"spec.restartPolicy":       string(pod.Spec.RestartPolicy),
		"spec.schedulerName":       pod.Spec.SchedulerName,
		"spec.serviceAccountName":  pod.Spec.ServiceAccountName,
		"spec.hostNetwork":         strconv.FormatBool(pod.Spec.HostNetwork),
		"status.phase":             string(pod.Status.Phase),
		"status.podIP":             pod.Status.PodIP,
		"status.nominatedNodeName": pod.Status.NominatedNodeName,
	}
}
