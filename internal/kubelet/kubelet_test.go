package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func resources(req, lim map[corev1.ResourceName]string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for k, v := range req {
		r.Requests[k] = resource.MustParse(v)
	}
	for k, v := range lim {
		r.Limits[k] = resource.MustParse(v)
	}
	return r
}

func podWith(rs ...corev1.ResourceRequirements) *corev1.Pod {
	p := &corev1.Pod{}
	for i, r := range rs {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: string(rune('a' + i)), Resources: r})
	}
	return p
}

func TestQOSClass(t *testing.T) {
	cpu, mem := corev1.ResourceCPU, corev1.ResourceMemory
	tests := []struct {
		name string
		pod  *corev1.Pod
		want corev1.PodQOSClass
	}{
		{"nothing set", podWith(corev1.ResourceRequirements{}), corev1.PodQOSBestEffort},
		{"equal requests and limits", podWith(resources(map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"}, map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"})), corev1.PodQOSGuaranteed},
		{"limits only count as requests", podWith(resources(nil, map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"})), corev1.PodQOSBurstable},
		{"requests below limits", podWith(resources(map[corev1.ResourceName]string{cpu: "500m"}, map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"})), corev1.PodQOSBurstable},
		{"one container without", podWith(resources(map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"}, map[corev1.ResourceName]string{cpu: "1", mem: "1Gi"}), corev1.ResourceRequirements{}), corev1.PodQOSBurstable},
		{"memory only", podWith(resources(map[corev1.ResourceName]string{mem: "1Gi"}, nil)), corev1.PodQOSBurstable},
		{"zero requests ask for nothing", podWith(resources(map[corev1.ResourceName]string{cpu: "0", mem: "0"}, nil)), corev1.PodQOSBestEffort},
		{"zero limits ask for nothing", podWith(resources(nil, map[corev1.ResourceName]string{cpu: "0"})), corev1.PodQOSBestEffort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := qosClass(tt.pod); got != tt.want {
				t.Errorf("qosClass = %s, want %s", got, tt.want)
			}
		})
	}
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}

func waiting(reason string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
}

func TestBackoff(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	b := newBackoff(clk)
	key := "uid/app"
	steps := []struct {
		name     string
		advance  time.Duration // before the container exits
		wantWait time.Duration // right after the exit
	}{
		{"first exit restarts at once", 0, 0},
		{"second exit waits 10s", time.Second, 10 * time.Second},
		{"third exit waits 20s", 11 * time.Second, 20 * time.Second},
		{"fourth exit waits 40s", 21 * time.Second, 40 * time.Second},
		{"a long run resets it", 11 * time.Minute, 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clk.Step(s.advance)
			finished := clk.Now()
			if got := b.wait(key, finished); got != s.wantWait {
				t.Fatalf("wait = %s, want %s", got, s.wantWait)
			}
			clk.Step(s.wantWait)
			if got := b.wait(key, finished); got != 0 {
				t.Fatalf("wait after the back-off = %s, want 0", got)
			}
			b.next(key, finished)
		})
	}
	t.Run("capped at 5 minutes", func(t *testing.T) {
		for range 10 {
			b.next(key, clk.Now())
		}
		if got := b.current(key); got != backoffMax {
			t.Errorf("delay = %s, want %s", got, backoffMax)
		}
	})
	t.Run("forget", func(t *testing.T) {
		b.forget("uid/")
		if got := b.wait(key, clk.Now()); got != 0 {
			t.Errorf("wait after forget = %s", got)
		}
	})
}

func TestDNSConfig(t *testing.T) {
	dir := t.TempDir()
	old := hostResolvConf
	hostResolvConf = filepath.Join(dir, "resolv.conf")
	t.Cleanup(func() { hostResolvConf = old })
	if err := os.WriteFile(hostResolvConf, []byte("# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ndots := "2"
	tests := []struct {
		name       string
		clusterDNS []string
		spec       corev1.PodSpec
		want       *runtimeapi.DNSConfig
	}{
		{"cluster first", []string{"10.43.0.10"}, corev1.PodSpec{},
			&runtimeapi.DNSConfig{Servers: []string{"10.43.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:5"}}},
		{"no cluster DNS falls back to the host's", nil, corev1.PodSpec{},
			&runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0"}}},
		{"host network means Default", []string{"10.43.0.10"}, corev1.PodSpec{HostNetwork: true},
			&runtimeapi.DNSConfig{Servers: []string{"192.0.2.53"}, Searches: []string{"corp.example"}, Options: []string{"edns0"}}},
		{"none with dnsConfig", []string{"10.43.0.10"}, corev1.PodSpec{DNSPolicy: corev1.DNSNone, DNSConfig: &corev1.PodDNSConfig{
			Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}}}},
			&runtimeapi.DNSConfig{Servers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []string{"ndots:2"}}},
		{"dnsConfig option overrides", []string{"10.43.0.10"}, corev1.PodSpec{DNSConfig: &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}}}},
			&runtimeapi.DNSConfig{Servers: []string{"10.43.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"}, Options: []string{"ndots:2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &Kubelet{cfg: Config{ClusterDNS: tt.clusterDNS, ClusterDomain: "cluster.local"}}
			pod := &corev1.Pod{Spec: tt.spec}
			pod.Namespace = "ns"
			got, err := k.dnsConfig(pod)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Servers, tt.want.Servers) || !slices.Equal(got.Searches, tt.want.Searches) || !slices.Equal(got.Options, tt.want.Options) {
				t.Errorf("dnsConfig = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHostsFile(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "web-0", "shop"
	pod.Spec.Subdomain = "web"
	pod.Spec.HostAliases = []corev1.HostAlias{{IP: "192.0.2.1", Hostnames: []string{"db", "db.local"}}}
	got := string(hostsFile(pod, "10.42.0.7", "cluster.local"))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.42.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n", "192.0.2.1\tdb\tdb.local\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts file lacks %q:\n%s", want, got)
		}
	}
}

func TestContainerResources(t *testing.T) {
	cpu, mem := corev1.ResourceCPU, corev1.ResourceMemory
	k := &Kubelet{cfg: Config{Machine: fixedMachine{"4", "8Gi"}}}
	tests := []struct {
		name string
		res  corev1.ResourceRequirements
		want *runtimeapi.LinuxContainerResources
	}{
		{"best effort", corev1.ResourceRequirements{}, &runtimeapi.LinuxContainerResources{CpuShares: 2, OomScoreAdj: 1000}},
		{"guaranteed", resources(map[corev1.ResourceName]string{cpu: "500m", mem: "256Mi"}, map[corev1.ResourceName]string{cpu: "500m", mem: "256Mi"}),
			&runtimeapi.LinuxContainerResources{CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 256 << 20, OomScoreAdj: -997}},
		{"burstable", resources(map[corev1.ResourceName]string{cpu: "100m", mem: "4Gi"}, nil),
			&runtimeapi.LinuxContainerResources{CpuShares: 102, OomScoreAdj: 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := podWith(tt.res)
			got := k.containerResources(pod, &pod.Spec.Containers[0])
			if got.CpuShares != tt.want.CpuShares || got.CpuQuota != tt.want.CpuQuota || got.CpuPeriod != tt.want.CpuPeriod ||
				got.MemoryLimitInBytes != tt.want.MemoryLimitInBytes || got.OomScoreAdj != tt.want.OomScoreAdj {
				t.Errorf("resources = %v, want %v", got, tt.want)
			}
		})
	}
}

type fixedMachine struct{ cpu, mem string }

func (m fixedMachine) Capacity() corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(m.cpu), corev1.ResourceMemory: resource.MustParse(m.mem)}
}
func (fixedMachine) Info() corev1.NodeSystemInfo  { return corev1.NodeSystemInfo{} }
func (fixedMachine) Pressure() (bool, bool, bool) { return false, false, false }

func TestRegistryHost(t *testing.T) {
	tests := map[string]string{
		"busybox":                      "docker.io",
		"library/busybox:1":            "docker.io",
		"index.docker.io/library/x":    "docker.io",
		"127.0.0.1:5000/e2e/busybox:1": "127.0.0.1:5000",
		"skiff.local/pause:1":          "skiff.local",
		"localhost/x":                  "localhost",
	}
	for image, want := range tests {
		t.Run(image, func(t *testing.T) {
			if got := registryHost(image); got != want {
				t.Errorf("registryHost(%q) = %q, want %q", image, got, want)
			}
		})
	}
}

// TestRunRetriesRegistration: an agent started while the API server does
// not answer keeps trying to register instead of exiting.
func TestRunRetriesRegistration(t *testing.T) {
	h := newHarness(t)
	failures := 3
	h.client.PrependReactor("create", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures > 0 {
			failures--
			return true, nil, apierrors.NewServiceUnavailable("no server")
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	// A fresh kubelet: the harness's is set up for direct syncs.
	k, err := New(h.k.cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := h.client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before registering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("node never registered")
		}
		h.clock.Step(10 * time.Second) // past any retry delay
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
