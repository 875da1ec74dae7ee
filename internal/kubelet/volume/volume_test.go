package volume

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeAPI stands in for the kubelet's informer listers: Setup's only
// boundary to the API.
type fakeAPI struct {
	mu         sync.Mutex
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
}

func (f *fakeAPI) setConfigMap(cm *corev1.ConfigMap) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configMaps[cm.Namespace+"/"+cm.Name] = cm
}

func (f *fakeAPI) setSecret(s *corev1.Secret) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[s.Namespace+"/"+s.Name] = s
}

func (f *fakeAPI) configMap(namespace, name string) (*corev1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "broken" {
		return nil, apierrors.NewServiceUnavailable("cache not synced")
	}
	cm, ok := f.configMaps[namespace+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
	}
	return cm, nil
}

func (f *fakeAPI) secret(namespace, name string) (*corev1.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[namespace+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	return s, nil
}

// newTestManager returns a Manager rooted in a fresh temp dir. Teardown of
// every pod UID the test names runs before the temp dir is removed, so no
// tmpfs outlives the test, and the test fails if one would.
func newTestManager(t *testing.T, api *fakeAPI, uids ...types.UID) *Manager {
	t.Helper()
	m, err := New(Config{
		RootDir:    t.TempDir(),
		ConfigMaps: api.configMap,
		Secrets:    api.secret,
		NodeAllocatable: func() corev1.ResourceList {
			return corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("2"),
				corev1.ResourceMemory:           resource.MustParse("16Mi"),
				corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
			}
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		for _, uid := range uids {
			if err := m.Teardown(uid); err != nil {
				t.Errorf("Teardown(%s): %v", uid, err)
			}
		}
		if mps, err := mountsUnder(m.root); err != nil || len(mps) > 0 {
			t.Errorf("mounts left under %s: %v %v", m.root, mps, err)
		}
	})
	return m
}

func testPod(uid types.UID, volumes ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: uid},
		Spec: corev1.PodSpec{
			Volumes:    volumes,
			Containers: []corev1.Container{{Name: "app"}},
		},
	}
}

var tsDirName = regexp.MustCompile(`^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+$`)

// readVolume returns the user-visible files of an atomic-writer volume
// (path → content and mode, read through the symlinks as a container
// would) after checking the layout: ..data points at a timestamped dir and
// every top-level entry other than the writer's own is a link into ..data.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		t.Fatalf("readlink ..data: %v", err)
	}
	if !tsDirName.MatchString(target) {
		t.Fatalf("..data -> %q, want a timestamped dir", target)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			if e.Name() != dataLink && e.Name() != target {
				t.Errorf("unexpected writer entry %s left in volume", e.Name())
			}
			continue
		}
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || link != "..data/"+e.Name() {
			t.Errorf("%s -> %q (%v), want ..data/%s", e.Name(), link, err, e.Name())
		}
	}
	got := map[string]string{}
	err = filepath.WalkDir(filepath.Join(dir, target), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, target), p)
		// Read through the user-visible path, not the timestamped one.
		fi, err := os.Stat(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		got[rel] = fi.Mode().Perm().String() + " " + string(data)
		return nil
	})
	if err != nil {
		t.Fatalf("walk volume: %v", err)
	}
	return got
}

// mountEntry is one line of /proc/self/mountinfo, reduced to what tests check.
type mountEntry struct{ fsType, superOpts string }

func mountsAt(t *testing.T, path string) []mountEntry {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 || unescapeMountPath(fields[4]) != path {
			continue
		}
		out = append(out, mountEntry{fsType: tail[0], superOpts: tail[2]})
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestNew(t *testing.T) {
	api := newFakeAPI()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no root dir", Config{ConfigMaps: api.configMap, Secrets: api.secret}},
		{"no configmap getter", Config{RootDir: t.TempDir(), Secrets: api.secret}},
		{"no secret getter", Config{RootDir: t.TempDir(), ConfigMaps: api.configMap}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New succeeded, want error")
			}
		})
	}
}

func TestSetupUnsupportedAndInvalid(t *testing.T) {
	const uid = types.UID("u-unsupported")
	m := newTestManager(t, newFakeAPI(), uid)
	tests := []struct {
		name    string
		pod     *corev1.Pod
		wantErr []string
	}{
		{
			name: "persistent volume claim",
			pod: testPod(uid, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}}),
			wantErr: []string{`volume "data"`, "not supported"},
		},
		{
			name: "every failing volume is reported",
			pod: testPod(uid,
				corev1.Volume{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}},
				corev1.Volume{Name: "ok", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				corev1.Volume{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}}}),
			wantErr: []string{`volume "a"`, `configmaps "nope" not found`, `volume "b"`, `secrets "gone" not found`},
		},
		{name: "empty UID", pod: testPod(""), wantErr: []string{"invalid pod UID"}},
		{name: "UID escaping the root", pod: testPod("../x"), wantErr: []string{"invalid pod UID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			paths, err := m.Setup(context.Background(), tt.pod)
			if err == nil {
				t.Fatalf("Setup = %v, want error", paths)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}
