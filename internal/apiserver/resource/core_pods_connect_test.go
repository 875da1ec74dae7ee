package resource

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestPodConnectLocations(t *testing.T) {
	bound := func(p *corev1.Pod) { p.Spec.NodeName = "node-a" }
	twoContainers := func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "busybox"})
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	}
	tests := []struct {
		name      string
		sub       string
		pod       *corev1.Pod
		query     string
		wantPath  string
		wantQuery string
		wantCode  int32 // an error's status code
		wantMsg   string
	}{
		{name: "log defaults the only container", sub: "log", pod: coreTestPod(bound),
			wantPath: "/containerLogs/default/web/app"},
		{name: "log options", sub: "log", pod: coreTestPod(bound),
			query:    "follow=1&previous=true&timestamps=true&tailLines=10&limitBytes=100&sinceTime=2024-01-01T10:00:00Z&stream=Stdout",
			wantPath: "/containerLogs/default/web/app",
			wantQuery: "follow=true&limitBytes=100&previous=true&sinceTime=2024-01-01T10%3A00%3A00Z&stream=Stdout" +
				"&tailLines=10&timestamps=true"},
		{name: "log of an init container", sub: "log", pod: coreTestPod(bound, twoContainers), query: "container=init",
			wantPath: "/containerLogs/default/web/init"},
		{name: "log of an ephemeral container", sub: "log", pod: coreTestPod(bound, twoContainers), query: "container=debug",
			wantPath: "/containerLogs/default/web/debug"},
		{name: "log needs a container name", sub: "log", pod: coreTestPod(bound, twoContainers), wantCode: 400,
			wantMsg: "a container name must be specified for pod web, choose one of: [app side] or one of the init containers: [init]"},
		{name: "log of an unknown container", sub: "log", pod: coreTestPod(bound), query: "container=nope", wantCode: 400,
			wantMsg: "container nope is not valid for pod web"},
		{name: "log of an unbound pod", sub: "log", pod: coreTestPod(), wantCode: 400,
			wantMsg: "pod web does not have a host assigned"},
		{name: "log negative tail", sub: "log", pod: coreTestPod(bound), query: "tailLines=-1", wantCode: 422,
			wantMsg: "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"},
		{name: "log zero limit", sub: "log", pod: coreTestPod(bound), query: "limitBytes=0", wantCode: 422},
		{name: "log zero since", sub: "log", pod: coreTestPod(bound), query: "sinceSeconds=0", wantCode: 422},
		{name: "log both since", sub: "log", pod: coreTestPod(bound), query: "sinceSeconds=5&sinceTime=2024-01-01T10:00:00Z", wantCode: 422},
		{name: "log bad stream", sub: "log", pod: coreTestPod(bound), query: "stream=stdout", wantCode: 422},
		{name: "log unparsable number", sub: "log", pod: coreTestPod(bound), query: "tailLines=ten", wantCode: 400},
		{name: "log unparsable flag", sub: "log", pod: coreTestPod(bound), query: "follow=yes", wantCode: 400},
		{name: "exec maps streams", sub: "exec", pod: coreTestPod(bound),
			query:    "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=false&tty=1",
			wantPath: "/exec/default/web/app", wantQuery: "command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1"},
		{name: "exec names a container", sub: "exec", pod: coreTestPod(bound, twoContainers), query: "container=side&command=ls&stdout=1",
			wantPath: "/exec/default/web/side", wantQuery: "command=ls&output=1"},
		{name: "exec needs a container name", sub: "exec", pod: coreTestPod(bound, twoContainers), query: "command=ls", wantCode: 400,
			wantMsg: "a container name must be specified for pod web, choose one of: [app side] or one of the init containers: [init]"},
		{name: "exec bad flag", sub: "exec", pod: coreTestPod(bound), query: "command=ls&stdout=sure", wantCode: 400},
		{name: "attach drops command", sub: "attach", pod: coreTestPod(bound), query: "command=ls&stdin=true&stdout=true&stderr=true",
			wantPath: "/attach/default/web/app", wantQuery: "error=1&input=1&output=1"},
		{name: "attach to an unbound pod", sub: "attach", pod: coreTestPod(), query: "stdout=true", wantCode: 400,
			wantMsg: "pod web does not have a host assigned"},
		{name: "portforward ports", sub: "portforward", pod: coreTestPod(bound), query: "ports=80&ports=8080",
			wantPath: "/portForward/default/web", wantQuery: "port=80&port=8080"},
		{name: "portforward needs no container", sub: "portforward", pod: coreTestPod(bound, twoContainers),
			wantPath: "/portForward/default/web"},
		{name: "portforward bad port", sub: "portforward", pod: coreTestPod(bound), query: "ports=70000", wantCode: 400},
	}
	connect := Pods().Connect
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			target, err := connect[tt.sub].Location(tt.pod, q)
			if tt.wantCode != 0 {
				st, ok := err.(apierrors.APIStatus)
				if !ok {
					t.Fatalf("err = %v, want an API error %d", err, tt.wantCode)
				}
				if st.Status().Code != tt.wantCode || tt.wantMsg != "" && st.Status().Message != tt.wantMsg {
					t.Errorf("error %d %q, want %d %q", st.Status().Code, st.Status().Message, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if target.Node != "node-a" || target.Path != tt.wantPath || target.Query.Encode() != tt.wantQuery {
				t.Errorf("target %s %s?%s, want node-a %s?%s", target.Node, target.Path, target.Query.Encode(), tt.wantPath, tt.wantQuery)
			}
		})
	}
}

func TestPodConnectDeclarations(t *testing.T) {
	pods := Pods()
	if got, want := pods.Subresources(), []string{"status", "binding", "attach", "exec", "log", "portforward"}; !slices.Equal(got, want) {
		t.Errorf("subresources %v, want %v", got, want)
	}
	tests := []struct {
		sub, kind string
		verbs     []string
		upgrade   bool
	}{
		{"log", "Pod", []string{"get"}, false},
		{"exec", "PodExecOptions", []string{"create", "get"}, true},
		{"attach", "PodAttachOptions", []string{"create", "get"}, true},
		{"portforward", "PodPortForwardOptions", []string{"create", "get"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			c := pods.Connect[tt.sub]
			if c.Kind.Kind != tt.kind || !slices.Equal(c.Verbs(), tt.verbs) || c.Upgrade != tt.upgrade {
				t.Errorf("kind %s verbs %v upgrade %v, want %s %v %v", c.Kind.Kind, c.Verbs(), c.Upgrade, tt.kind, tt.verbs, tt.upgrade)
			}
			if tt.upgrade != slices.Contains(c.Methods, http.MethodPost) {
				t.Errorf("methods %v", c.Methods)
			}
		})
	}
}
