package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// layerEpoch is the modification and creation time of everything skiff
// builds. A fixed time is what makes the layer bytes, and so the digests,
// depend on content alone. 2000-01-01 rather than 1970 because some tools
// treat a zero Unix time as "unset".
const layerEpoch = 946684800

// entry is one file system object of a layer.
type entry struct {
	name     string // relative path, no leading slash
	typ      byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode     int64  // permission bits, including the sticky bit
	linkname string // symlink target
	data     []byte // regular file contents
}

func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }

func file(name string, mode int64, data []byte) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, data: data}
}

func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, linkname: target}
}

// buildLayer writes entries as a deterministic tar, sorted by name (so
// parents precede children), owned by root, all at layerEpoch.
func buildLayer(entries []entry) (v1.Layer, error) {
	sorted := append([]entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(layerEpoch, 0).UTC()
	for _, e := range sorted {
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Linkname: e.linkname,
			Mode:     e.mode,
			Size:     int64(len(e.data)),
			ModTime:  mtime,
			Uname:    "root",
			Gname:    "root",
		}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("tar data %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("layer from tar: %w", err)
	}
	return layer, nil
}

// buildImage makes a one-layer linux image for this machine's architecture
// with the given runtime config.
func buildImage(layer v1.Layer, cfg v1.Config, createdBy string) (v1.Image, error) {
	epoch := v1.Time{Time: time.Unix(layerEpoch, 0).UTC()}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: epoch, CreatedBy: createdBy},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = epoch
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}
