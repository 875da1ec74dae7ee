package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/skiffhq/skiff/internal/runtime/cri"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// busybox is the static busybox the test image is built from.
const busybox = "/bin/busybox"

// serveSandboxImage starts an in-memory registry holding repo:tag, an
// image whose entrypoint sleeps, and returns the registry's address.
func serveSandboxImage(t *testing.T, repoTag string) string {
	t.Helper()
	bin, err := os.ReadFile(busybox)
	if err != nil {
		t.Skipf("static busybox not installed: %v", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tw.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer.Bytes())), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/bin/busybox", "sleep", "3600"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(addr+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push test image: %v", err)
	}
	return addr
}

// scrub removes, at cleanup, whatever a failed test may leave: shims
// serving dir, processes in the cgroup, the cgroup itself in every
// hierarchy, and mounts under dir. In a passing run it finds only empty
// cgroups, and asserts so.
func scrub(t *testing.T, dir, cgroupParent string) {
	t.Cleanup(func() {
		for _, p := range processesUsing(t, dir) {
			t.Errorf("process left behind; killing it: %s", p)
			if pid, err := strconv.Atoi(p[:strings.IndexByte(p, ':')]); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
		for _, h := range hierarchies {
			root := filepath.Join(h, cgroupParent)
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			slices.Reverse(dirs) // children first
			for _, d := range dirs {
				procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
				for _, f := range strings.Fields(string(procs)) {
					t.Errorf("process %s left in cgroup %s; killing it", f, d)
					if pid, err := strconv.Atoi(f); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						waitFor(t, "leftover process to die", 10*time.Second, func() bool { return !alive(pid) })
					}
				}
				if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
					t.Errorf("remove cgroup %s: %v", d, err)
				}
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		var under []string
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				under = append(under, f[4])
			}
		}
		slices.Reverse(under)
		for _, m := range under {
			t.Errorf("mount %s left behind; detaching it", m)
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
}

// sandboxPid returns the pid of the sandbox's process from the verbose
// status containerd gives.
func sandboxPid(t *testing.T, ctx context.Context, c *cri.Client, id string) int {
	t.Helper()
	st, err := c.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if got := st.GetStatus().GetState(); got != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandbox state %v, want READY", got)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("no pid in verbose sandbox info (%v): %q", err, st.GetInfo()["info"])
	}
	return info.Pid
}

func dial(t *testing.T, ctx context.Context, endpoint string) *cri.Client {
	t.Helper()
	c, err := cri.Dial(ctx, endpoint)
	if err != nil {
		t.Fatalf("cri.Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestDaemonRestartKeepsPods runs a pod sandbox, whose image is pulled
// through a configured mirror, stops containerd, and checks that the
// sandbox keeps running and that a new Daemon on the same Dir adopts it.
func TestDaemonRestartKeepsPods(t *testing.T) {
	needContainerd(t)
	const image = "skiff.local/test/pause:1"
	mirror := serveSandboxImage(t, "test/pause:1")
	dir := t.TempDir()
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	cgroupParent := "/skiff-test-" + hex.EncodeToString(suffix)
	noProcessesLeft(t, dir) // registered first: checked last
	scrub(t, dir, cgroupParent)

	cfg := Config{
		Dir:          dir,
		SandboxImage: image,
		Mirrors:      map[string][]string{"skiff.local": {"http://" + mirror}},
		Logger:       testLogger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r1 := start(t, cfg)
	c1 := dial(t, ctx, r1.d.Endpoint())
	if _, err := c1.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatalf("pull %s through mirror %s: %v", image, mirror, err)
	}
	run, err := c1.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "adopted", Namespace: "default", Uid: "uid-" + hex.EncodeToString(suffix)},
		LogDirectory: t.TempDir(),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				// Host network keeps CNI out of this test.
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	id := run.GetPodSandboxId()
	pid := sandboxPid(t, ctx, c1, id)

	if err := r1.stop(t); err != nil {
		t.Fatalf("stop first containerd: %v", err)
	}
	if !alive(pid) {
		t.Fatalf("sandbox process %d died with containerd", pid)
	}
	shims := processesUsing(t, "containerd-shim")
	if !slices.ContainsFunc(shims, func(s string) bool { return strings.Contains(s, dir) }) {
		t.Errorf("no shim for our containerd survived; shims: %v", shims)
	}

	r2 := start(t, cfg)
	c2 := dial(t, ctx, r2.d.Endpoint())
	list, err := c2.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	if n := len(list.GetItems()); n != 1 || list.GetItems()[0].GetId() != id {
		t.Fatalf("ListPodSandbox after restart = %v, want only %s", list.GetItems(), id)
	}
	if got := sandboxPid(t, ctx, c2, id); got != pid {
		t.Errorf("adopted sandbox pid %d, want %d (the same process)", got, pid)
	}

	if _, err := c2.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := c2.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	waitFor(t, "sandbox process to exit", 10*time.Second, func() bool { return !alive(pid) })
	waitFor(t, "shim to exit", 10*time.Second, func() bool {
		return !slices.ContainsFunc(processesUsing(t, "containerd-shim"), func(s string) bool { return strings.Contains(s, dir) })
	})
	if err := r2.stop(t); err != nil {
		t.Errorf("stop second containerd: %v", err)
	}
}
