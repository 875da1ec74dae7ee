package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerFile is one entry of an image's single layer.
type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// readOneLayer checks that img has exactly one layer and returns its
// entries by name.
func readOneLayer(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(hdr.Name, "/")] = layerFile{hdr, data}
	}
}

func configFile(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	return cf
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPauseImage(t *testing.T) {
	img, err := Pause()
	if err != nil {
		t.Skipf("no pause program for this machine: %v", err)
	}
	if cf := configFile(t, img); !slices.Equal(cf.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("entrypoint = %q", cf.Config.Entrypoint)
	}
	want, _ := pauseELF(runtime.GOARCH)
	files := readOneLayer(t, img)
	if f, ok := files["pause"]; len(files) != 1 || !ok || f.hdr.Mode != 0o755 || !bytes.Equal(f.data, want) {
		t.Errorf("layer = %v, want only pause 0755 with the program", files)
	}
	again, err := Pause()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, img), digest(t, again); a != b {
		t.Errorf("digest changed between builds: %s, %s", a, b)
	}
}

func TestBusybox(t *testing.T) {
	if _, err := os.Stat(DefaultBusybox); err != nil {
		t.Skipf("%s missing (Debian busybox-static): %v", DefaultBusybox, err)
	}
	img, err := Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	cf := configFile(t, img)
	if !slices.Equal(cf.Config.Cmd, []string{"sh"}) || len(cf.Config.Env) != 1 || !strings.HasPrefix(cf.Config.Env[0], "PATH=/usr/local/sbin:") {
		t.Errorf("config = Cmd %q Env %q", cf.Config.Cmd, cf.Config.Env)
	}
	files := readOneLayer(t, img)
	bin, err := os.ReadFile(DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		typ      byte
		mode     int64
		linkname string
		contains string
	}{
		{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, linkname: "busybox"},
		{name: "bin/wget", typ: tar.TypeSymlink, mode: 0o777, linkname: "busybox"},
		{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, contains: "nobody:x:65534:65534:"},
		{name: "etc/group", typ: tar.TypeReg, mode: 0o644, contains: "root:x:0:"},
		{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
		{name: "var/www", typ: tar.TypeDir, mode: 0o755},
		{name: "root", typ: tar.TypeDir, mode: 0o700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := files[tc.name]
			if !ok {
				t.Fatal("missing")
			}
			if f.hdr.Typeflag != tc.typ || f.hdr.Mode != tc.mode || f.hdr.Linkname != tc.linkname || f.hdr.Uid != 0 {
				t.Errorf("header = type %c mode %o link %q uid %d", f.hdr.Typeflag, f.hdr.Mode, f.hdr.Linkname, f.hdr.Uid)
			}
			if !strings.Contains(string(f.data), tc.contains) {
				t.Errorf("contents %q lack %q", f.data, tc.contains)
			}
			if tc.name == "bin/busybox" && !bytes.Equal(f.data, bin) {
				t.Error("bin/busybox differs from the host binary")
			}
		})
	}
	out, err := exec.Command(DefaultBusybox, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if _, ok := files["bin/"+applet]; !ok {
			t.Errorf("no symlink for applet %q", applet)
		}
	}

	// The same binary under another path must give the same digest.
	copyPath := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(copyPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	again, err := Busybox(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, img), digest(t, again); a != b {
		t.Errorf("digest not stable: %s, %s", a, b)
	}
}

func TestBusyboxErrors(t *testing.T) {
	dir := t.TempDir()
	notBusybox := filepath.Join(dir, "false")
	if err := os.WriteFile(notBusybox, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope"), "read busybox"},
		{"list fails", notBusybox, "list busybox applets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Busybox(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
