package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// testImages returns the pause image and a random three-layer image.
func testImages(t *testing.T) (pause, other v1.Image) {
	t.Helper()
	pause, err := pauseImage("amd64") // any architecture will do here
	if err != nil {
		t.Fatal(err)
	}
	other, err = random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	return pause, other
}

// checkRead reads archive and compares what it names with want.
func checkRead(t *testing.T, archive string, want map[string]v1.Image) {
	t.Helper()
	got, err := ReadArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d images, want %d", len(got), len(want))
	}
	for _, n := range got {
		w, ok := want[n.Ref]
		if !ok {
			t.Fatalf("unexpected ref %q", n.Ref)
		}
		if g, w := digest(t, n.Image), digest(t, w); g != w {
			t.Errorf("%s: digest %s, want %s", n.Ref, g, w)
		}
		// Reads every blob back and checks digests and sizes.
		if err := validate.Image(n.Image); err != nil {
			t.Errorf("%s: %v", n.Ref, err)
		}
	}
}

func TestDockerArchiveRoundTrip(t *testing.T) {
	pause, other := testImages(t)
	archive := filepath.Join(t.TempDir(), "images.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	err = WriteArchive(f, []Named{
		{Ref: PauseRef, Image: pause},
		{Ref: "example.com/team/app:v2", Image: other},
		{Ref: "busybox:latest", Image: other}, // same image, second name
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	checkRead(t, archive, map[string]v1.Image{
		PauseRef: pause, "example.com/team/app:v2": other, "busybox:latest": other,
	})
}

func TestWriteArchiveErrors(t *testing.T) {
	pause, _ := testImages(t)
	for _, tc := range []struct {
		name   string
		images []Named
		want   string
	}{
		{"none", nil, "no images"},
		{"digest ref", []Named{{Ref: "busybox@sha256:" + strings.Repeat("a", 64), Image: pause}}, "not a tag"},
		{"duplicate", []Named{{Ref: "a:1", Image: pause}, {Ref: "a:1", Image: pause}}, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteArchive(io.Discard, tc.images); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOCIArchiveRoundTrip(t *testing.T) {
	pause, other := testImages(t)
	foreign, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)

	dir := t.TempDir()
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(pause, layout.WithAnnotations(map[string]string{annotationRefName: PauseRef})); err != nil {
		t.Fatal(err)
	}
	// containerd's name wins over a bare tag in ref.name.
	if err := lp.AppendImage(other, layout.WithAnnotations(map[string]string{
		annotationContainerdName: "docker.io/library/busybox:latest", annotationRefName: "latest",
	})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(multi, layout.WithAnnotations(map[string]string{annotationContainerdName: "example.com/multi:1"})); err != nil {
		t.Fatal(err)
	}
	archive := tarDir(t, dir)
	checkRead(t, archive, map[string]v1.Image{
		PauseRef: pause, "docker.io/library/busybox:latest": other, "example.com/multi:1": other,
	})
}

func TestReadArchiveErrors(t *testing.T) {
	pause, _ := testImages(t)
	dir := t.TempDir()

	unnamed := filepath.Join(dir, "unnamed")
	lp, err := layout.Write(unnamed, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(pause); err != nil {
		t.Fatal(err)
	}

	untagged := filepath.Join(dir, "untagged.tar")
	digestRef, err := name.NewDigest("example.com/x@sha256:" + strings.Repeat("b", 64))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tarball.MultiRefWrite(map[name.Reference]v1.Image{digestRef: pause}, &buf); err != nil {
		t.Fatal(err)
	}
	writeFile(t, untagged, buf.Bytes())

	gz := filepath.Join(dir, "images.tar.gz")
	var gzbuf bytes.Buffer
	zw := gzip.NewWriter(&gzbuf)
	if _, err := zw.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, gz, gzbuf.Bytes())

	other := filepath.Join(dir, "other")
	writeFile(t, filepath.Join(other, "hello.txt"), []byte("hi"))

	for _, tc := range []struct{ name, path, want string }{
		{"OCI image without name", tarDir(t, unnamed), "has no name"},
		{"docker image without RepoTags", untagged, "no RepoTags"},
		{"gzip", gz, "decompress"},
		{"unknown tar", tarDir(t, other), "neither"},
		{"missing", filepath.Join(dir, "nope.tar"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadArchive(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir packs dir into a new tar the way `tar -C dir -cf x.tar .` does,
// with "./" prefixes, and returns its path.
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(dir)+".tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}
