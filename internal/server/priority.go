package server

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver"
	"github.com/skiffhq/skiff/internal/storage"
)

// priorityAdmission resolves a new pod's priorityClassName into
// spec.priority and spec.preemptionPolicy, as upstream's Priority admission
// plugin does, so the scheduler orders and preempts by number.
type priorityAdmission struct {
	api *apiserver.Server
}

var _ apiserver.Admitter = (*priorityAdmission)(nil)

var priorityClasses = schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"}

func (p *priorityAdmission) Admit(ctx context.Context, a *apiserver.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Operation != apiserver.Create {
		return nil
	}
	name := pod.Spec.PriorityClassName
	var class *schedulingv1.PriorityClass
	store, res, ok := p.api.Store(priorityClasses)
	if !ok {
		return nil
	}
	if name != "" {
		obj, err := store.Get(ctx, apiserver.KeyPrefix(res)+name)
		if err != nil {
			return apierrors.NewForbidden(a.Resource.Resource().GroupResource(), pod.Name,
				fmt.Errorf("no PriorityClass with name %s was found", name))
		}
		class = obj.(*schedulingv1.PriorityClass)
	}
	if class == nil {
		var err error
		if class, err = p.globalDefault(ctx); err != nil || class == nil {
			return err // none: priority 0, as upstream without a default class
		}
		pod.Spec.PriorityClassName = class.Name
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != class.Value {
		return apierrors.NewInvalid(a.Resource.Kind.GroupKind(), pod.Name, field.ErrorList{field.Invalid(
			field.NewPath("spec", "priority"), *pod.Spec.Priority, "the integer value of priority must not be provided in pod spec; priority admission controller computed "+fmt.Sprint(class.Value)+" from the given PriorityClass name")})
	}
	policy := corev1.PreemptLowerPriority
	if class.PreemptionPolicy != nil {
		policy = *class.PreemptionPolicy
	}
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy != policy {
		return apierrors.NewInvalid(a.Resource.Kind.GroupKind(), pod.Name, field.ErrorList{field.Invalid(
			field.NewPath("spec", "preemptionPolicy"), *pod.Spec.PreemptionPolicy, "the string value of PreemptionPolicy must not be provided in pod spec; priority admission controller computed "+string(policy)+" from the given PriorityClass name")})
	}
	v := class.Value
	pod.Spec.Priority = &v
	pod.Spec.PreemptionPolicy = &policy
	return nil
}

// globalDefault returns the PriorityClass marked globalDefault, if any; it
// applies to pods that name no class.
func (p *priorityAdmission) globalDefault(ctx context.Context) (*schedulingv1.PriorityClass, error) {
	store, res, ok := p.api.Store(priorityClasses)
	if !ok {
		return nil, nil
	}
	list, err := store.List(ctx, apiserver.KeyPrefix(res), storage.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("list priority classes: %w", err))
	}
	var best *schedulingv1.PriorityClass
	for _, obj := range list.Items {
		if pc := obj.(*schedulingv1.PriorityClass); pc.GlobalDefault && (best == nil || pc.Value < best.Value) {
			best = pc
		}
	}
	return best, nil
}
