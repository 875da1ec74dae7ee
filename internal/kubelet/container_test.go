package kubelet

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

func TestContainerSecurityProfiles(t *testing.T) {
	runtimeDefault := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	tests := []struct {
		name string
		pod  *corev1.PodSecurityContext
		ctr  *corev1.SecurityContext
		want *runtimeapi.SecurityProfile
	}{
		{"none asked: runtime default, unconfined", nil, nil, nil},
		{"pod's profile", &corev1.PodSecurityContext{SeccompProfile: runtimeDefault}, nil,
			&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}},
		{"container's wins", &corev1.PodSecurityContext{SeccompProfile: runtimeDefault},
			&corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}},
		{"localhost profile under the kubelet's seccomp dir", nil,
			&corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr.To("audit.json")}},
			&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/audit.json"}},
		{"privileged containers are not confined", &corev1.PodSecurityContext{SeccompProfile: runtimeDefault},
			&corev1.SecurityContext{Privileged: ptr.To(true)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPod("p", corev1.RestartPolicyAlways, "app")
			p.Spec.SecurityContext = tt.pod
			p.Spec.Containers[0].SecurityContext = tt.ctr
			got := containerSecurity(p, &p.Spec.Containers[0], "/var/lib/kubelet/seccomp").Seccomp
			if got.GetProfileType() != tt.want.GetProfileType() || got.GetLocalhostRef() != tt.want.GetLocalhostRef() || (got == nil) != (tt.want == nil) {
				t.Errorf("seccomp = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSandboxSecurityProfile(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.PodSecurityContext
		want *runtimeapi.SecurityProfile // nil: unset, the runtime's default (unconfined)
	}{
		{"none", nil, nil},
		{"runtime default", &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &Kubelet{cfg: Config{RootDir: t.TempDir(), ClusterDomain: DefaultClusterDomain}}
			p := testPod("p", corev1.RestartPolicyAlways, "app")
			p.Spec.SecurityContext = tt.pod
			cfg, err := k.sandboxConfig(p, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Linux.SecurityContext.Seccomp; (got == nil) != (tt.want == nil) || got.GetProfileType() != tt.want.GetProfileType() {
				t.Errorf("sandbox seccomp = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHTTPHook(t *testing.T) {
	tests := []struct {
		name   string
		server func(http.Handler) *httptest.Server
		scheme corev1.URIScheme
	}{
		{"plain http", httptest.NewServer, corev1.URISchemeHTTP},
		{"https with a certificate no node can verify", httptest.NewTLSServer, corev1.URISchemeHTTPS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hit := make(chan string, 1)
			srv := tt.server(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hit <- r.URL.Path
			}))
			t.Cleanup(srv.Close)
			k := &Kubelet{hookClient: newHookClient()}
			u, err := url.Parse(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			host, port, _ := net.SplitHostPort(u.Host)
			n, _ := strconv.Atoi(port)
			h := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: host, Port: intstr.FromInt32(int32(n)), Path: "/drain", Scheme: tt.scheme}}
			if err := k.runHook(t.Context(), &corev1.Pod{}, &corev1.Container{Name: "app"}, "", h, "", 5*time.Second); err != nil {
				t.Fatalf("hook: %v", err)
			}
			if got := <-hit; got != "/drain" {
				t.Errorf("hook hit %q", got)
			}
		})
	}
}
