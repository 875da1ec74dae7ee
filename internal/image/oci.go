package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on index.json entries that name an image. containerd's (and
// Docker's) exports put the full reference in the first; the OCI one is
// the spec's, and what skopeo and go-containerregistry write.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// ociLayout serves the blobs of an OCI image layout straight out of its tar.
type ociLayout struct {
	archive string
	files   map[string]*tarFile
}

// readOCIArchive returns one Named per entry of index.json. An entry that
// is itself an index (a multi-platform image) gives this machine's
// linux image.
func readOCIArchive(archive string, files map[string]*tarFile) ([]Named, error) {
	l := &ociLayout{archive: archive, files: files}
	raw, err := l.read(files["index.json"])
	if err != nil {
		return nil, fmt.Errorf("read index.json: %w", err)
	}
	index, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse index.json: %w", err)
	}
	if len(index.Manifests) == 0 {
		return nil, errors.New("index.json lists no images")
	}
	var images []Named
	for _, desc := range index.Manifests {
		ref := desc.Annotations[annotationContainerdName]
		if ref == "" {
			ref = desc.Annotations[annotationRefName]
		}
		if ref == "" {
			return nil, fmt.Errorf("image %s has no name: index.json gives it neither %s nor %s",
				desc.Digest, annotationRefName, annotationContainerdName)
		}
		if _, err := name.ParseReference(ref); err != nil {
			return nil, fmt.Errorf("image %s: name %q: %w", desc.Digest, ref, err)
		}
		img, err := l.image(desc)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		images = append(images, Named{Ref: ref, Image: img})
	}
	return images, nil
}

// image returns the image desc points to, choosing linux/GOARCH from an
// index.
func (l *ociLayout) image(desc v1.Descriptor) (v1.Image, error) {
	raw, err := l.blob(desc.Digest)
	if err != nil {
		return nil, err
	}
	switch {
	case desc.MediaType.IsImage():
		m, err := v1.ParseManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", desc.Digest, err)
		}
		return partial.CompressedToImage(&ociImage{layout: l, raw: raw, manifest: m, mediaType: desc.MediaType})
	case desc.MediaType.IsIndex():
		index, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parse index %s: %w", desc.Digest, err)
		}
		want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
		for _, child := range index.Manifests {
			// Attestations and other platforms are skipped; a lone
			// manifest without a platform is taken as this one.
			lone := child.Platform == nil && len(index.Manifests) == 1
			if child.MediaType.IsImage() && (lone || child.Platform != nil && child.Platform.Satisfies(want)) {
				return l.image(child)
			}
		}
		return nil, fmt.Errorf("index %s has no image for %s", desc.Digest, want)
	default:
		return nil, fmt.Errorf("%s: unsupported media type %q", desc.Digest, desc.MediaType)
	}
}

func (l *ociLayout) open(h v1.Hash) (io.ReadCloser, error) {
	tf := l.files["blobs/"+h.Algorithm+"/"+h.Hex]
	if tf == nil {
		return nil, fmt.Errorf("blob %s missing from the archive", h)
	}
	return openTarFile(l.archive, tf)
}

func (l *ociLayout) read(tf *tarFile) ([]byte, error) {
	rc, err := openTarFile(l.archive, tf)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// blob reads a small blob (manifest, index, config) whole and checks its
// digest, because the image digest is computed from these very bytes.
func (l *ociLayout) blob(h v1.Hash) ([]byte, error) {
	rc, err := l.open(h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h, err)
	}
	if got, _, _ := v1.SHA256(bytes.NewReader(b)); got != h {
		return nil, fmt.Errorf("blob %s has digest %s", h, got)
	}
	return b, nil
}

// ociImage is a manifest of the layout; go-containerregistry's partial
// package derives the rest of v1.Image from it.
type ociImage struct {
	layout    *ociLayout
	raw       []byte
	manifest  *v1.Manifest
	mediaType types.MediaType
}

func (i *ociImage) MediaType() (types.MediaType, error) {
	if i.manifest.MediaType != "" {
		return i.manifest.MediaType, nil
	}
	return i.mediaType, nil
}

func (i *ociImage) RawManifest() ([]byte, error) { return i.raw, nil }

func (i *ociImage) RawConfigFile() ([]byte, error) { return i.layout.blob(i.manifest.Config.Digest) }

func (i *ociImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.manifest.Config.Digest {
		return &ociBlob{layout: i.layout, desc: i.manifest.Config}, nil
	}
	for _, d := range i.manifest.Layers {
		if d.Digest == h {
			return &ociBlob{layout: i.layout, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("layer %s is not in the image", h)
}

// ociBlob is one layer (or the config) as stored, compressed or not.
type ociBlob struct {
	layout *ociLayout
	desc   v1.Descriptor
}

func (b *ociBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *ociBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *ociBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }
func (b *ociBlob) Compressed() (io.ReadCloser, error)  { return b.layout.open(b.desc.Digest) }
func (b *ociBlob) Descriptor() (*v1.Descriptor, error) { d := b.desc; return &d, nil }
