package volume

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func cmRef(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }

func TestSetupAPIVolumes(t *testing.T) {
	api := newFakeAPI()
	api.setConfigMap(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cfg"},
		Data:       map[string]string{"a.conf": "alpha", "b.conf": "beta"},
		BinaryData: map[string][]byte{"blob": {0, 1, 0xff}},
	})
	api.setConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "cfg"}, Data: map[string]string{"x": "wrong namespace"}})
	api.setSecret(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "creds"},
		Data:       map[string][]byte{"password": []byte("s3cr\x00t\xfe"), "user": []byte("admin")},
	})

	tests := []struct {
		name     string
		src      corev1.VolumeSource
		want     map[string]string // path → "mode content"
		inMemory bool
		wantErr  string
		notFound bool
	}{
		{
			name: "configmap all keys with default mode, binaryData included",
			src:  corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg")}},
			want: map[string]string{"a.conf": "-rw-r--r-- alpha", "b.conf": "-rw-r--r-- beta", "blob": "-rw-r--r-- \x00\x01\xff"},
		},
		{
			name: "configmap defaultMode",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg"),
				DefaultMode: ptr(int32(0o400))}},
			want: map[string]string{"a.conf": "-r-------- alpha", "b.conf": "-r-------- beta", "blob": "-r-------- \x00\x01\xff"},
		},
		{
			name: "configmap items with paths and modes",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg"),
				DefaultMode: ptr(int32(0o640)),
				Items: []corev1.KeyToPath{
					{Key: "a.conf", Path: "etc/app/a.conf", Mode: ptr(int32(0o755))},
					{Key: "b.conf", Path: "b"},
				}}},
			want: map[string]string{"etc/app/a.conf": "-rwxr-xr-x alpha", "b": "-rw-r----- beta"},
		},
		{
			name:     "missing required configmap names the object",
			src:      corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("x")}},
			wantErr:  `configmaps "x" not found`,
			notFound: true,
		},
		{
			name: "missing optional configmap is an empty volume",
			src:  corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("x"), Optional: ptr(true)}},
			want: map[string]string{},
		},
		{
			name:    "optional configmap failing to load for another reason",
			src:     corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("broken"), Optional: ptr(true)}},
			wantErr: "configmap default/broken: cache not synced",
		},
		{
			name: "missing key of a required configmap",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg"),
				Items: []corev1.KeyToPath{{Key: "nope", Path: "n"}}}},
			wantErr: "configmap \"cfg\" references non-existent config key: nope",
		},
		{
			name: "missing key of an optional configmap is skipped",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg"), Optional: ptr(true),
				Items: []corev1.KeyToPath{{Key: "nope", Path: "n"}, {Key: "a.conf", Path: "a"}}}},
			want: map[string]string{"a": "-rw-r--r-- alpha"},
		},
		{
			name: "item path escaping the volume",
			src: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg"),
				Items: []corev1.KeyToPath{{Key: "a.conf", Path: "../../etc/passwd"}}}},
			wantErr: "must not contain '..'",
		},
		{
			name:     "secret values written as bytes on a tmpfs",
			src:      corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}},
			want:     map[string]string{"password": "-rw-r--r-- s3cr\x00t\xfe", "user": "-rw-r--r-- admin"},
			inMemory: true,
		},
		{
			name: "secret items and defaultMode",
			src: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds", DefaultMode: ptr(int32(0o400)),
				Items: []corev1.KeyToPath{{Key: "password", Path: "pw"}}}},
			want:     map[string]string{"pw": "-r-------- s3cr\x00t\xfe"},
			inMemory: true,
		},
		{
			name:     "missing required secret",
			src:      corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone"}},
			wantErr:  `secrets "gone" not found`,
			notFound: true,
		},
		{
			name:     "missing optional secret",
			src:      corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "gone", Optional: ptr(true)}},
			want:     map[string]string{},
			inMemory: true,
		},
		{
			name: "missing key of a required secret",
			src: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds",
				Items: []corev1.KeyToPath{{Key: "token", Path: "t"}}}},
			wantErr: "secret \"creds\" references non-existent secret key: token",
		},
		{
			name: "projected configmap, secret and downwardAPI",
			src: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr(int32(0o440)), Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef("cfg"), Items: []corev1.KeyToPath{{Key: "a.conf", Path: "conf/a"}}}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: cmRef("creds"), Items: []corev1.KeyToPath{{Key: "user", Path: "conf/user", Mode: ptr(int32(0o400))}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: cmRef("absent"), Optional: ptr(true)}},
			}}},
			want:     map[string]string{"conf/a": "-r--r----- alpha", "conf/user": "-r-------- admin", "name": "-r--r----- web"},
			inMemory: true,
		},
		{
			name: "projected required source missing",
			src: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: cmRef("absent")}},
			}}},
			wantErr:  `secrets "absent" not found`,
			notFound: true,
		},
		{
			name: "projected serviceAccountToken",
			src: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			}}},
			wantErr: "serviceAccountToken sources are not supported",
		},
		{
			name: "projected clusterTrustBundle",
			src: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Name: ptr("b"), Path: "ca.crt"}},
			}}},
			wantErr: "clusterTrustBundle sources are not supported",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid := types.UID("u-api-" + string(rune('a'+i)))
			m := newTestManager(t, api, uid)
			pod := testPod(uid, corev1.Volume{Name: "vol", VolumeSource: tt.src})
			paths, err := m.Setup(context.Background(), pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Setup error = %v, want %q", err, tt.wantErr)
				}
				if apierrors.IsNotFound(err) != tt.notFound {
					t.Errorf("IsNotFound(%v) = %v, want %v", err, !tt.notFound, tt.notFound)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			dir := paths["vol"]
			if !strings.HasPrefix(dir, m.PodDir(uid)+"/volumes/") {
				t.Fatalf("volume path %s not under pod dir %s", dir, m.PodDir(uid))
			}
			if got := readVolume(t, dir); !maps.Equal(got, tt.want) {
				t.Errorf("volume files = %q, want %q", got, tt.want)
			}
			tmpfs := false
			for _, e := range mountsAt(t, dir) {
				tmpfs = tmpfs || e.fsType == "tmpfs"
			}
			if tmpfs != tt.inMemory {
				t.Errorf("tmpfs mounted on volume = %v, want %v", tmpfs, tt.inMemory)
			}
			// A second Setup with nothing changed leaves everything as it was.
			before, _ := os.Readlink(filepath.Join(dir, dataLink))
			if _, err := m.Setup(context.Background(), pod); err != nil {
				t.Fatalf("second Setup: %v", err)
			}
			if after, _ := os.Readlink(filepath.Join(dir, dataLink)); after != before {
				t.Errorf("unchanged volume rewritten: ..data %s -> %s", before, after)
			}
			if n := len(mountsAt(t, dir)); tt.inMemory && n != 1 {
				t.Errorf("%d mounts on %s after second Setup, want 1", n, dir)
			}
		})
	}
}

// TestSetupUpdates drives one configMap volume through the changes the
// kubelet's periodic sync must carry to running pods.
func TestSetupUpdates(t *testing.T) {
	const uid = types.UID("u-updates")
	api := newFakeAPI()
	m := newTestManager(t, api, uid)
	set := func(data map[string]string) {
		api.setConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cfg"}, Data: data})
	}
	pod := testPod(uid,
		corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg")}}},
		corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}})

	tests := []struct {
		name    string
		change  func()
		want    map[string]string
		rewrite bool
	}{
		{name: "first setup", change: func() { set(map[string]string{"k": "v1", "gone": "soon"}) },
			want: map[string]string{"k": "-rw-r--r-- v1", "gone": "-rw-r--r-- soon"}, rewrite: true},
		{name: "no change keeps the same dir", change: func() {},
			want: map[string]string{"k": "-rw-r--r-- v1", "gone": "-rw-r--r-- soon"}},
		{name: "equal content in a new object keeps the same dir", change: func() { set(map[string]string{"k": "v1", "gone": "soon"}) },
			want: map[string]string{"k": "-rw-r--r-- v1", "gone": "-rw-r--r-- soon"}},
		{name: "value change", change: func() { set(map[string]string{"k": "v2", "gone": "soon"}) },
			want: map[string]string{"k": "-rw-r--r-- v2", "gone": "-rw-r--r-- soon"}, rewrite: true},
		{name: "key removed drops its link", change: func() { set(map[string]string{"k": "v2"}) },
			want: map[string]string{"k": "-rw-r--r-- v2"}, rewrite: true},
		{name: "key added", change: func() { set(map[string]string{"k": "v2", "new": "n"}) },
			want: map[string]string{"k": "-rw-r--r-- v2", "new": "-rw-r--r-- n"}, rewrite: true},
		{name: "mode change", change: func() {
			pod.Spec.Volumes[0].ConfigMap.DefaultMode = ptr(int32(0o600))
		}, want: map[string]string{"k": "-rw------- v2", "new": "-rw------- n"}, rewrite: true},
		{name: "deleted required configmap fails and keeps the old files", change: func() {
			api.mu.Lock()
			delete(api.configMaps, "default/cfg")
			api.mu.Unlock()
		}, want: nil},
	}
	dir := filepath.Join(m.PodDir(uid), "volumes", kindConfigMap, "cfg")
	prev := ""
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change()
			_, err := m.Setup(context.Background(), pod)
			if tt.want == nil {
				if err == nil {
					t.Fatal("Setup succeeded with the configmap gone")
				}
				if target, _ := os.Readlink(filepath.Join(dir, dataLink)); target != prev {
					t.Errorf("..data moved to %s on a failed Setup", target)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if got := readVolume(t, dir); !maps.Equal(got, tt.want) {
				t.Errorf("files = %q, want %q", got, tt.want)
			}
			target, err := os.Readlink(filepath.Join(dir, dataLink))
			if err != nil {
				t.Fatal(err)
			}
			if rewrote := target != prev; rewrote != tt.rewrite {
				t.Errorf("..data %s -> %s: rewritten = %v, want %v", prev, target, rewrote, tt.rewrite)
			}
			if prev != "" && target != prev {
				if _, err := os.Lstat(filepath.Join(dir, prev)); !os.IsNotExist(err) {
					t.Errorf("old payload dir %s still there (%v)", prev, err)
				}
			}
			prev = target
		})
	}

	t.Run("label change reaches the downwardAPI volume", func(t *testing.T) {
		set(map[string]string{"k": "v2"})
		pod.Labels = map[string]string{"app": "web", "tier": "front"}
		if _, err := m.Setup(context.Background(), pod); err != nil {
			t.Fatalf("Setup: %v", err)
		}
		info := filepath.Join(m.PodDir(uid), "volumes", kindDownwardAPI, "info")
		want := map[string]string{"labels": "-rw-r--r-- app=\"web\"\ntier=\"front\""}
		if got := readVolume(t, info); !maps.Equal(got, want) {
			t.Errorf("files = %q, want %q", got, want)
		}
	})
}

func TestWriteAtomicCleansCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	if _, err := writeAtomic(dir, map[string]file{"a": {data: []byte("1"), mode: 0o644}}); err != nil {
		t.Fatal(err)
	}
	// What a crash between writing a payload and swapping ..data leaves.
	for _, p := range []string{"..2001_01_01_00_00_00.1/a", dataLinkTmp} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "..2001_01_01_00_00_00.1", "a"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2001_01_01_00_00_00.1", filepath.Join(dir, dataLinkTmp)); err != nil {
		t.Fatal(err)
	}
	changed, err := writeAtomic(dir, map[string]file{"a": {data: []byte("2"), mode: 0o644}})
	if err != nil || !changed {
		t.Fatalf("writeAtomic = %v, %v; want a rewrite", changed, err)
	}
	if got, want := readVolume(t, dir), map[string]string{"a": "-rw-r--r-- 2"}; !maps.Equal(got, want) {
		t.Errorf("files = %q, want %q", got, want)
	}
	if _, err := os.Lstat(filepath.Join(dir, dataLinkTmp)); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dataLinkTmp, err)
	}
}

func TestValidatePayloadPath(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string
	}{
		{"a", ""},
		{"a/b/c.txt", ""},
		{"..a/b", "must not start with '..'"},
		{"a/../b", "must not contain '..'"},
		{"/etc/passwd", "must be relative path"},
		{"", "must not be empty"},
		{".", "must not be empty"},
		{strings.Repeat("x", 256), "less than or equal to 255"},
		{strings.Repeat("x/", 2049), "less than or equal to 4096"},
	}
	for _, tt := range tests {
		name := tt.path
		if len(name) > 20 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := validatePayloadPath(tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
