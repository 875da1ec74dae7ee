package resource

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}
	supportedDNSPolicies     = []corev1.DNSPolicy{corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSNone}
	supportedTolerationOps   = []corev1.TolerationOperator{corev1.TolerationOpExists, corev1.TolerationOpEqual}
	supportedTaintEffects    = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}
)

// validatePodTemplateSpec checks a workload's pod template: its labels and
// annotations (which the generic metadata checks never see, as they sit
// inside the spec) and its pod spec. Callers add their own rules, such as
// Deployments requiring restartPolicy Always.
func validatePodTemplateSpec(t *corev1.PodTemplateSpec, path *field.Path) field.ErrorList {
	meta := path.Child("metadata")
	errs := metav1validation.ValidateLabels(t.Labels, meta.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, meta.Child("annotations"))...)
	errs = append(errs, validatePodSpec(&t.Spec, path.Child("spec"))...)
	return errs
}

// validatePodSpec checks a pod spec as upstream does for both pods and pod
// templates. The container image is not required here: upstream lets a
// template leave it for higher-level tooling to fill, and requires it only
// of pods (validatePod).
func validatePodSpec(spec *corev1.PodSpec, path *field.Path) field.ErrorList {
	volumes, errs := validateVolumes(spec.Volumes, path.Child("volumes"))
	errs = append(errs, validateAllContainers(spec, volumes, path)...)

	if spec.RestartPolicy == "" {
		errs = append(errs, field.Required(path.Child("restartPolicy"), ""))
	} else if !coreContains(supportedRestartPolicies, spec.RestartPolicy) {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), spec.RestartPolicy, supportedRestartPolicies))
	}
	errs = append(errs, validateDNS(spec, path)...)

	errs = append(errs, metav1validation.ValidateLabels(spec.NodeSelector, path.Child("nodeSelector"))...)
	if spec.ServiceAccountName != "" {
		errs = append(errs, coreNamesErrors(path.Child("serviceAccountName"), spec.ServiceAccountName, validation.IsDNS1123Subdomain(spec.ServiceAccountName))...)
	}
	if spec.NodeName != "" {
		errs = append(errs, coreNamesErrors(path.Child("nodeName"), spec.NodeName, validation.IsDNS1123Subdomain(spec.NodeName))...)
	}
	if spec.ActiveDeadlineSeconds != nil && *spec.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("activeDeadlineSeconds"), *spec.ActiveDeadlineSeconds, "must be between 1 and 2147483647, inclusive"))
	}
	if spec.Hostname != "" {
		errs = append(errs, coreNamesErrors(path.Child("hostname"), spec.Hostname, validation.IsDNS1123Label(spec.Hostname))...)
	}
	if spec.Subdomain != "" {
		errs = append(errs, coreNamesErrors(path.Child("subdomain"), spec.Subdomain, validation.IsDNS1123Label(spec.Subdomain))...)
	}
	if spec.PriorityClassName != "" {
		errs = append(errs, coreNamesErrors(path.Child("priorityClassName"), spec.PriorityClassName, validation.IsDNS1123Subdomain(spec.PriorityClassName))...)
	}
	for i, s := range spec.ImagePullSecrets {
		if s.Name == "" {
			errs = append(errs, field.Required(path.Child("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	errs = append(errs, validateTolerations(spec.Tolerations, path.Child("tolerations"))...)
	errs = append(errs, validatePodSecurityContext(spec.SecurityContext, path.Child("securityContext"))...)
	if spec.HostNetwork {
		errs = append(errs, validateHostNetworkPorts(spec, path)...)
	}
	return errs
}

func validateDNS(spec *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	p := path.Child("dnsPolicy")
	switch {
	case spec.DNSPolicy == "":
		errs = append(errs, field.Required(p, ""))
	case !coreContains(supportedDNSPolicies, spec.DNSPolicy):
		errs = append(errs, field.NotSupported(p, spec.DNSPolicy, supportedDNSPolicies))
	case spec.DNSPolicy == corev1.DNSNone && spec.DNSConfig == nil:
		errs = append(errs, field.Required(path.Child("dnsConfig"), fmt.Sprintf("must provide `dnsConfig` when `dnsPolicy` is %s", corev1.DNSNone)))
	}
	if c := spec.DNSConfig; c != nil {
		cp := path.Child("dnsConfig")
		if spec.DNSPolicy == corev1.DNSNone && len(c.Nameservers) == 0 {
			errs = append(errs, field.Required(cp.Child("nameservers"), fmt.Sprintf("must provide at least one DNS nameserver when `dnsPolicy` is %s", corev1.DNSNone)))
		}
		if len(c.Nameservers) > 3 {
			errs = append(errs, field.Invalid(cp.Child("nameservers"), c.Nameservers, "must not have more than 3 nameservers"))
		}
		for i, o := range c.Options {
			if o.Name == "" {
				errs = append(errs, field.Required(cp.Child("options").Index(i).Child("name"), "Option.Name must not be empty"))
			}
		}
	}
	return errs
}

// validateTolerations follows upstream: Exists needs no value, Equal needs
// a key (an empty key matches all keys only with Exists), and only NoExecute
// tolerations may bound how long they tolerate.
func validateTolerations(tols []corev1.Toleration, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range tols {
		p := path.Index(i)
		if t.Key != "" {
			errs = append(errs, metav1validation.ValidateLabelName(t.Key, p.Child("key"))...)
		} else if t.Operator != corev1.TolerationOpExists {
			errs = append(errs, field.Invalid(p.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(p.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.Operator {
		case corev1.TolerationOpEqual, "":
			errs = append(errs, coreNamesErrors(p.Child("value"), t.Value, validation.IsValidLabelValue(t.Value))...)
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(p.Child("operator"), t, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("operator"), t.Operator, supportedTolerationOps))
		}
		if t.Effect != "" && !coreContains(supportedTaintEffects, t.Effect) {
			errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, supportedTaintEffects))
		}
	}
	return errs
}

func validatePodSecurityContext(sc *corev1.PodSecurityContext, path *field.Path) field.ErrorList {
	if sc == nil {
		return nil
	}
	var errs field.ErrorList
	if sc.RunAsUser != nil {
		errs = append(errs, coreNamesErrors(path.Child("runAsUser"), *sc.RunAsUser, validation.IsValidUserID(*sc.RunAsUser))...)
	}
	if sc.RunAsGroup != nil {
		errs = append(errs, coreNamesErrors(path.Child("runAsGroup"), *sc.RunAsGroup, validation.IsValidGroupID(*sc.RunAsGroup))...)
	}
	if sc.FSGroup != nil {
		errs = append(errs, coreNamesErrors(path.Child("fsGroup"), *sc.FSGroup, validation.IsValidGroupID(*sc.FSGroup))...)
	}
	for i, g := range sc.SupplementalGroups {
		errs = append(errs, coreNamesErrors(path.Child("supplementalGroups").Index(i), g, validation.IsValidGroupID(g))...)
	}
	return errs
}

// validateHostNetworkPorts: with the host's network the container port is
// the host port, so upstream rejects a differing hostPort.
func validateHostNetworkPorts(spec *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(cs []corev1.Container, p *field.Path) {
		for i, c := range cs {
			for j, port := range c.Ports {
				if port.HostPort != 0 && port.HostPort != port.ContainerPort {
					errs = append(errs, field.Invalid(p.Index(i).Child("ports").Index(j).Child("hostPort"), port.HostPort, "must match `containerPort` when `hostNetwork` is true"))
				}
			}
		}
	}
	check(spec.InitContainers, path.Child("initContainers"))
	check(spec.Containers, path.Child("containers"))
	return errs
}

func coreContains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
