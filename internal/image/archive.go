package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Named is an image with the reference it is known by, such as
// "skiff.local/pause:1" or "busybox:latest".
type Named struct {
	Ref   string
	Image v1.Image
}

// WriteArchive writes images as a docker-archive tar (the `docker save`
// format), each under its Ref as a RepoTag. Refs must be tags; an image
// appearing under several refs is stored once.
func WriteArchive(w io.Writer, images []Named) error {
	if len(images) == 0 {
		return errors.New("write image archive: no images")
	}
	refs := make(map[name.Reference]v1.Image, len(images))
	for _, n := range images {
		tag, err := name.NewTag(n.Ref)
		if err != nil {
			return fmt.Errorf("write image archive: %q is not a tag: %w", n.Ref, err)
		}
		if _, dup := refs[tag]; dup {
			return fmt.Errorf("write image archive: %s given twice", n.Ref)
		}
		refs[tag] = n.Image
	}
	if err := tarball.MultiRefWrite(refs, w); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	return nil
}

// ReadArchive reads the images of a tar at path in either the
// docker-archive format (manifest.json; each RepoTag gives one Named) or
// the OCI image layout (index.json; the name comes from the
// io.containerd.image.name annotation, else org.opencontainers.image.ref.name).
// An image without a name is an error, since nothing could refer to it.
// The tar must not be compressed. Image contents are read from path
// lazily, so path must stay in place while the images are in use.
func ReadArchive(path string) ([]Named, error) {
	files, err := indexTar(path)
	if err != nil {
		return nil, fmt.Errorf("read image archive %s: %w", path, err)
	}
	var images []Named
	switch {
	case files["manifest.json"] != nil:
		images, err = readDockerArchive(path)
	case files["index.json"] != nil:
		images, err = readOCIArchive(path, files)
	default:
		err = errors.New("neither a docker archive (no manifest.json) nor an OCI image layout (no index.json)")
	}
	if err != nil {
		return nil, fmt.Errorf("read image archive %s: %w", path, err)
	}
	return images, nil
}

// readDockerArchive reads a `docker save` tar through go-containerregistry,
// one Named per RepoTag.
func readDockerArchive(path string) ([]Named, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("docker archive manifest: %w", err)
	}
	var images []Named
	for _, desc := range manifest {
		if len(desc.RepoTags) == 0 {
			return nil, fmt.Errorf("docker archive image with config %s has no RepoTags, so no name", desc.Config)
		}
		for _, ref := range desc.RepoTags {
			tag, err := name.NewTag(ref)
			if err != nil {
				return nil, fmt.Errorf("docker archive RepoTag %q: %w", ref, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return nil, fmt.Errorf("docker archive image %s: %w", ref, err)
			}
			images = append(images, Named{Ref: ref, Image: img})
		}
	}
	return images, nil
}

// tarFile locates one regular file's contents inside the tar.
type tarFile struct {
	offset, size int64
}

// indexTar lists the regular files of the tar at archive with their offsets,
// by name without any leading "./" or "/", so that blobs can later be read
// in place rather than unpacked or held in memory.
func indexTar(archive string) (map[string]*tarFile, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	magic := make([]byte, 2)
	if _, err := io.ReadFull(f, magic); err == nil && bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		return nil, errors.New("gzip-compressed; decompress it first")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	files := map[string]*tarFile{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		// tar.Reader reads headers straight from f, so after Next the
		// file offset is where this entry's contents begin.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		files[strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")] = &tarFile{offset: off, size: hdr.Size}
	}
	return files, nil
}

// sectionReadCloser reads one tar entry and closes the file under it.
type sectionReadCloser struct {
	*io.SectionReader
	f *os.File
}

func (s sectionReadCloser) Close() error { return s.f.Close() }

// openTarFile opens one indexed entry of the tar at archive.
func openTarFile(archive string, tf *tarFile) (io.ReadCloser, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	return sectionReadCloser{io.NewSectionReader(f, tf.offset, tf.size), f}, nil
}
