package resource

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedPullPolicies  = []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever}
	supportedTermMsgPolicy = []corev1.TerminationMessagePolicy{corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError}
	supportedPortProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
)

// validateAllContainers checks containers, init containers and ephemeral
// containers together, since upstream requires names unique across all
// three (they share one namespace in logs and exec) and host ports unique
// across the pod.
func validateAllContainers(spec *corev1.PodSpec, volumes sets.Set[string], path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	hostPorts := sets.New[string]()
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), ""))
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		p := path.Child("initContainers").Index(i)
		errs = append(errs, validateContainer(c, volumes, names, hostPorts, p)...)
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if c.RestartPolicy != nil && !sidecar {
			errs = append(errs, field.NotSupported(p.Child("restartPolicy"), *c.RestartPolicy, []corev1.ContainerRestartPolicy{corev1.ContainerRestartPolicyAlways}))
		}
		// Only sidecars run alongside the app, so only they may be probed
		// or have lifecycle hooks; a plain init container runs to completion.
		if !sidecar {
			if c.Lifecycle != nil {
				errs = append(errs, field.Forbidden(p.Child("lifecycle"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.LivenessProbe != nil {
				errs = append(errs, field.Forbidden(p.Child("livenessProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.ReadinessProbe != nil {
				errs = append(errs, field.Forbidden(p.Child("readinessProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
			if c.StartupProbe != nil {
				errs = append(errs, field.Forbidden(p.Child("startupProbe"), "may not be set for init containers without restartPolicy=Always"))
			}
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		p := path.Child("containers").Index(i)
		errs = append(errs, validateContainer(c, volumes, names, hostPorts, p)...)
		if c.RestartPolicy != nil {
			errs = append(errs, field.Forbidden(p.Child("restartPolicy"), "may not be set for non-init containers"))
		}
	}
	for i := range spec.EphemeralContainers {
		c := corev1.Container(spec.EphemeralContainers[i].EphemeralContainerCommon)
		p := path.Child("ephemeralContainers").Index(i)
		errs = append(errs, validateContainer(&c, volumes, names, sets.New[string](), p)...)
		if len(c.Ports) > 0 {
			errs = append(errs, field.Forbidden(p.Child("ports"), "cannot be set for an Ephemeral Container"))
		}
	}
	return errs
}

// validateContainer checks one container; names and hostPorts accumulate
// across the pod so duplicates are reported at the second occurrence.
func validateContainer(c *corev1.Container, volumes, names, hostPorts sets.Set[string], path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch np := path.Child("name"); {
	case c.Name == "":
		errs = append(errs, field.Required(np, ""))
	case names.Has(c.Name):
		errs = append(errs, field.Duplicate(np, c.Name))
	default:
		errs = append(errs, coreNamesErrors(np, c.Name, validation.IsDNS1123Label(c.Name))...)
	}
	names.Insert(c.Name)
	if c.Image != strings.TrimSpace(c.Image) {
		errs = append(errs, field.Invalid(path.Child("image"), c.Image, "must not have leading or trailing whitespace"))
	}
	if c.ImagePullPolicy == "" {
		errs = append(errs, field.Required(path.Child("imagePullPolicy"), ""))
	} else if !coreContains(supportedPullPolicies, c.ImagePullPolicy) {
		errs = append(errs, field.NotSupported(path.Child("imagePullPolicy"), c.ImagePullPolicy, supportedPullPolicies))
	}
	if c.TerminationMessagePolicy == "" {
		errs = append(errs, field.Required(path.Child("terminationMessagePolicy"), ""))
	} else if !coreContains(supportedTermMsgPolicy, c.TerminationMessagePolicy) {
		errs = append(errs, field.NotSupported(path.Child("terminationMessagePolicy"), c.TerminationMessagePolicy, supportedTermMsgPolicy))
	}
	errs = append(errs, validateContainerPorts(c.Ports, hostPorts, path.Child("ports"))...)
	errs = append(errs, validateEnv(c.Env, path.Child("env"))...)
	errs = append(errs, validateEnvFrom(c.EnvFrom, path.Child("envFrom"))...)
	errs = append(errs, validateVolumeMounts(c.VolumeMounts, volumes, path.Child("volumeMounts"))...)
	errs = append(errs, validateProbe(c.LivenessProbe, true, path.Child("livenessProbe"))...)
	errs = append(errs, validateProbe(c.ReadinessProbe, false, path.Child("readinessProbe"))...)
	errs = append(errs, validateProbe(c.StartupProbe, true, path.Child("startupProbe"))...)
	errs = append(errs, validateResources(&c.Resources, path.Child("resources"))...)
	return errs
}

func validateContainerPorts(ports []corev1.ContainerPort, hostPorts sets.Set[string], path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i, port := range ports {
		p := path.Index(i)
		if port.Name != "" {
			errs = append(errs, coreNamesErrors(p.Child("name"), port.Name, validation.IsValidPortName(port.Name))...)
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(p.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(p.Child("containerPort"), ""))
		} else {
			errs = append(errs, coreNamesErrors(p.Child("containerPort"), port.ContainerPort, validation.IsValidPortNum(int(port.ContainerPort)))...)
		}
		if port.HostPort != 0 {
			errs = append(errs, coreNamesErrors(p.Child("hostPort"), port.HostPort, validation.IsValidPortNum(int(port.HostPort)))...)
			key := fmt.Sprintf("%s/%s/%d", port.HostIP, port.Protocol, port.HostPort)
			if hostPorts.Has(key) {
				errs = append(errs, field.Duplicate(p, key))
			}
			hostPorts.Insert(key)
		}
		if port.Protocol == "" {
			errs = append(errs, field.Required(p.Child("protocol"), ""))
		} else if !coreContains(supportedPortProtocols, port.Protocol) {
			errs = append(errs, field.NotSupported(p.Child("protocol"), port.Protocol, supportedPortProtocols))
		}
	}
	return errs
}

func validateEnv(env []corev1.EnvVar, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, e := range env {
		p := path.Index(i)
		if e.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else {
			// Upstream relaxed env names to any printable ASCII but '='.
			errs = append(errs, coreNamesErrors(p.Child("name"), e.Name, validation.IsRelaxedEnvVarName(e.Name))...)
		}
		if e.ValueFrom == nil {
			continue
		}
		vp := p.Child("valueFrom")
		n := 0
		if f := e.ValueFrom.FieldRef; f != nil {
			n++
			if f.FieldPath == "" {
				errs = append(errs, field.Required(vp.Child("fieldRef", "fieldPath"), ""))
			}
		}
		if r := e.ValueFrom.ResourceFieldRef; r != nil {
			n++
			if r.Resource == "" {
				errs = append(errs, field.Required(vp.Child("resourceFieldRef", "resource"), ""))
			}
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			n++
			errs = append(errs, validateKeyRef(r.Name, r.Key, vp.Child("configMapKeyRef"))...)
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil {
			n++
			errs = append(errs, validateKeyRef(r.Name, r.Key, vp.Child("secretKeyRef"))...)
		}
		if e.ValueFrom.FileKeyRef != nil {
			n++
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(vp, "", "may not have more than one field specified at a time"))
		case e.Value != "":
			errs = append(errs, field.Invalid(vp, "", "may not be specified when `value` is not empty"))
		}
	}
	return errs
}

func validateKeyRef(name, key string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	}
	if key == "" {
		errs = append(errs, field.Required(path.Child("key"), ""))
	} else {
		errs = append(errs, coreNamesErrors(path.Child("key"), key, validation.IsConfigMapKey(key))...)
	}
	return errs
}

func validateEnvFrom(from []corev1.EnvFromSource, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, f := range from {
		p := path.Index(i)
		n := 0
		if f.ConfigMapRef != nil {
			n++
			if f.ConfigMapRef.Name == "" {
				errs = append(errs, field.Required(p.Child("configMapRef", "name"), ""))
			}
		}
		if f.SecretRef != nil {
			n++
			if f.SecretRef.Name == "" {
				errs = append(errs, field.Required(p.Child("secretRef", "name"), ""))
			}
		}
		switch {
		case n == 0:
			errs = append(errs, field.Invalid(p, "", "must specify one of: `configMapRef` or `secretRef`"))
		case n > 1:
			errs = append(errs, field.Invalid(p, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

func validateVolumeMounts(mounts []corev1.VolumeMount, volumes sets.Set[string], path *field.Path) field.ErrorList {
	var errs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		p := path.Index(i)
		if m.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(p.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			errs = append(errs, field.Required(p.Child("mountPath"), ""))
		} else if paths.Has(m.MountPath) {
			errs = append(errs, field.Invalid(p.Child("mountPath"), m.MountPath, "must be unique"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" {
			errs = append(errs, validateVolumePath(m.SubPath, p.Child("subPath"), true)...)
		}
	}
	return errs
}

// validateProbe requires exactly one handler; liveness and startup probes
// decide on a single success, so upstream pins their successThreshold to 1.
func validateProbe(pr *corev1.Probe, singleSuccess bool, path *field.Path) field.ErrorList {
	if pr == nil {
		return nil
	}
	var errs field.ErrorList
	n := 0
	if pr.Exec != nil {
		n++
	}
	if g := pr.HTTPGet; g != nil {
		n++
		errs = append(errs, validateProbePort(g.Port.IntValue(), g.Port.String(), g.Port.Type == 0, path.Child("httpGet", "port"))...)
	}
	if t := pr.TCPSocket; t != nil {
		n++
		errs = append(errs, validateProbePort(t.Port.IntValue(), t.Port.String(), t.Port.Type == 0, path.Child("tcpSocket", "port"))...)
	}
	if g := pr.GRPC; g != nil {
		n++
		errs = append(errs, coreNamesErrors(path.Child("grpc", "port"), g.Port, validation.IsValidPortNum(int(g.Port)))...)
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(path, "must specify a handler type"))
	case n > 1:
		errs = append(errs, field.Forbidden(path, "may not specify more than 1 handler type"))
	}
	for _, f := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds}, {"timeoutSeconds", pr.TimeoutSeconds},
		{"periodSeconds", pr.PeriodSeconds}, {"successThreshold", pr.SuccessThreshold},
		{"failureThreshold", pr.FailureThreshold},
	} {
		if f.v < 0 {
			errs = append(errs, field.Invalid(path.Child(f.name), f.v, "must be greater than or equal to 0"))
		}
	}
	if singleSuccess && pr.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(path.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	if pr.TerminationGracePeriodSeconds != nil && *pr.TerminationGracePeriodSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("terminationGracePeriodSeconds"), *pr.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	return errs
}

func validateProbePort(num int, s string, isNum bool, path *field.Path) field.ErrorList {
	if isNum {
		return coreNamesErrors(path, num, validation.IsValidPortNum(num))
	}
	return coreNamesErrors(path, s, validation.IsValidPortName(s))
}

// validateResources: quantities must be non-negative and a request may not
// exceed its limit, since the scheduler packs by requests and the runtime
// enforces limits.
func validateResources(r *corev1.ResourceRequirements, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, part := range []struct {
		name string
		list corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name, q := range part.list {
			p := path.Child(part.name).Key(string(name))
			errs = append(errs, coreNamesErrors(p, string(name), validation.IsQualifiedName(string(name)))...)
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(p, q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			errs = append(errs, field.Invalid(path.Child("requests").Key(string(name)), req.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		}
	}
	return errs
}
