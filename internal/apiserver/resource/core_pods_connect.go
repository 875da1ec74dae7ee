package resource

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podConnect declares the pod subresources served by the pod's kubelet.
// Each maps the API's parameters (PodLogOptions, PodExecOptions...) to
// the kubelet's, as upstream's API server does.
func podConnect() map[string]*Connect {
	v1 := corev1.SchemeGroupVersion
	getCreate := []string{http.MethodGet, http.MethodPost}
	return map[string]*Connect{
		"log":         {Kind: v1.WithKind("Pod"), Methods: []string{http.MethodGet}, Location: podLogLocation},
		"exec":        {Kind: v1.WithKind("PodExecOptions"), Methods: getCreate, Upgrade: true, Location: podExecLocation},
		"attach":      {Kind: v1.WithKind("PodAttachOptions"), Methods: getCreate, Upgrade: true, Location: podAttachLocation},
		"portforward": {Kind: v1.WithKind("PodPortForwardOptions"), Methods: getCreate, Upgrade: true, Location: podPortForwardLocation},
	}
}

// podLogLocation validates PodLogOptions and points at the kubelet's
// containerLogs.
func podLogLocation(obj runtime.Object, q url.Values) (*ConnectTarget, error) {
	pod := obj.(*corev1.Pod)
	ctr, err := podContainer(pod, q.Get("container"))
	if err != nil {
		return nil, err
	}
	out := url.Values{}
	for _, name := range []string{"follow", "previous", "timestamps"} {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for %s: must be true or false", v, name))
			}
			out.Set(name, strconv.FormatBool(b))
		}
	}
	var errs field.ErrorList
	for _, p := range []struct {
		name string
		min  int64
		msg  string
	}{
		{"tailLines", 0, "must be greater than or equal to 0"},
		{"limitBytes", 1, "must be greater than 0"},
		{"sinceSeconds", 1, "must be greater than 0"},
	} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for %s: must be an integer", v, p.name))
		}
		if n < p.min {
			errs = append(errs, field.Invalid(field.NewPath(p.name), n, p.msg))
		}
		out.Set(p.name, strconv.FormatInt(n, 10))
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for sinceTime: must be an RFC 3339 time", v))
		}
		if q.Get("sinceSeconds") != "" {
			errs = append(errs, field.Forbidden(field.NewPath(""), "at most one of `sinceTime` or `sinceSeconds` may be specified"))
		}
		out.Set("sinceTime", t.Format(time.RFC3339))
	}
	switch v := q.Get("stream"); v {
	case "":
	case corev1.LogStreamStdout, corev1.LogStreamStderr, corev1.LogStreamAll:
		out.Set("stream", v)
	default:
		errs = append(errs, field.NotSupported(field.NewPath("stream"), v, []string{corev1.LogStreamStdout, corev1.LogStreamStderr, corev1.LogStreamAll}))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("PodLogOptions").GroupKind(), pod.Name, errs)
	}
	return podTarget(pod, "/containerLogs/"+pod.Namespace+"/"+pod.Name+"/"+ctr, out)
}

// podExecLocation maps PodExecOptions to the kubelet's exec parameters.
func podExecLocation(obj runtime.Object, q url.Values) (*ConnectTarget, error) {
	return podStreamLocation(obj.(*corev1.Pod), "exec", q)
}

// podAttachLocation maps PodAttachOptions to the kubelet's attach
// parameters.
func podAttachLocation(obj runtime.Object, q url.Values) (*ConnectTarget, error) {
	return podStreamLocation(obj.(*corev1.Pod), "attach", q)
}

// podStreamLocation maps exec's and attach's options: the standard
// streams and terminal become upstream's input, output, error and tty
// set to 1.
func podStreamLocation(pod *corev1.Pod, kind string, q url.Values) (*ConnectTarget, error) {
	ctr, err := podContainer(pod, q.Get("container"))
	if err != nil {
		return nil, err
	}
	out := url.Values{}
	if kind == "exec" {
		out[corev1.ExecCommandParam] = q["command"]
	}
	for _, p := range []struct{ from, to string }{
		{"stdin", corev1.ExecStdinParam},
		{"stdout", corev1.ExecStdoutParam},
		{"stderr", corev1.ExecStderrParam},
		{"tty", corev1.ExecTTYParam},
	} {
		v := q.Get(p.from)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid value %q for %s: must be true or false", v, p.from))
		}
		if b {
			out.Set(p.to, "1")
		}
	}
	return podTarget(pod, "/"+kind+"/"+pod.Namespace+"/"+pod.Name+"/"+ctr, out)
}

// podPortForwardLocation maps PodPortForwardOptions' ports to the
// kubelet's port parameters.
func podPortForwardLocation(obj runtime.Object, q url.Values) (*ConnectTarget, error) {
	pod := obj.(*corev1.Pod)
	out := url.Values{}
	for _, v := range q["ports"] {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid port %q: must be between 1 and 65535", v))
		}
		out.Add("port", strconv.FormatUint(p, 10))
	}
	return podTarget(pod, "/portForward/"+pod.Namespace+"/"+pod.Name, out)
}

// podTarget addresses the pod's node; an unscheduled pod has none.
func podTarget(pod *corev1.Pod, path string, q url.Values) (*ConnectTarget, error) {
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name))
	}
	return &ConnectTarget{Node: pod.Spec.NodeName, Path: path, Query: q}, nil
}

// podContainer returns the container a request names, or the pod's only
// container when it names none, with upstream's errors otherwise.
func podContainer(pod *corev1.Pod, name string) (string, error) {
	if name == "" {
		switch len(pod.Spec.Containers) {
		case 1:
			return pod.Spec.Containers[0].Name, nil
		case 0:
			return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s", pod.Name))
		}
		msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: %s", pod.Name, containerNames(pod.Spec.Containers))
		if len(pod.Spec.InitContainers) > 0 {
			msg += " or one of the init containers: " + containerNames(pod.Spec.InitContainers)
		}
		return "", apierrors.NewBadRequest(msg)
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return name, nil
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return name, nil
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return name, nil
		}
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
}

// containerNames lists names as upstream prints them: "[a b]".
func containerNames(cs []corev1.Container) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	return "[" + strings.Join(names, " ") + "]"
}
