package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/distribution/reference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageFsMountpoint names the simulated image filesystem in stats.
const imageFsMountpoint = "/var/lib/skiff-sim/images"

// image is the record of one pulled image. Nothing is downloaded: its ID
// and digests are hashes of its normalised reference, so every node that
// pulls the same name reports the same image.
type image struct {
	id          string // "sha256:" + 64 hex digits
	repoTags    []string
	repoDigests []string
	size        uint64
}

// reportedName is the name ContainerStatus gives the image: its first tag
// if it has one, as containerd reports it.
func (img *image) reportedName() string {
	if len(img.repoTags) > 0 {
		return img.repoTags[0]
	}
	if len(img.repoDigests) > 0 {
		return img.repoDigests[0]
	}
	return img.id
}

// reportedRef is the imageRef ContainerStatus gives: the repo digest, so
// that a pod's imageID looks like a real cluster's.
func (img *image) reportedRef() string {
	if len(img.repoDigests) > 0 {
		return img.repoDigests[0]
	}
	return img.id
}

// PullImage "pulls" any well-formed reference at once, without network.
func (r *Runtime) PullImage(_ context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if isImageID(ref) {
		// An ID names content we would have to have already.
		r.mu.Lock()
		defer r.mu.Unlock()
		img, err := r.findImage(ref)
		if err != nil {
			return nil, err
		}
		if img == nil {
			return nil, status.Errorf(codes.NotFound, "pull image %q: no image with that ID", ref)
		}
		return &runtimeapi.PullImageResponse{ImageRef: img.id}, nil
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parse image reference %q: %v", ref, err)
	}
	canonical := named.String()
	sum := sha256.Sum256([]byte(canonical))
	img := &image{
		id:   "sha256:" + hex.EncodeToString(sum[:]),
		size: 2<<20 + uint64(binary.BigEndian.Uint32(sum[:4]))%(62<<20),
	}
	if _, digested := named.(reference.Digested); digested {
		img.repoDigests = []string{canonical}
	} else {
		manifest := sha256.Sum256([]byte("manifest:" + canonical))
		img.repoTags = []string{canonical}
		img.repoDigests = []string{named.Name() + "@sha256:" + hex.EncodeToString(manifest[:])}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.images[img.id]; !ok {
		r.images[img.id] = img
		for _, ref := range slices.Concat(img.repoTags, img.repoDigests) {
			r.imageRefs[ref] = img.id
		}
		r.log.Debug("image pulled", "image", canonical, "imageRef", img.id)
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.id}, nil
}

// ImageStatus reports an image, or no image (and no error) if it is absent.
func (r *Runtime) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, err := r.findImage(req.GetImage().GetImage())
	if err != nil || img == nil {
		return &runtimeapi.ImageStatusResponse{}, err
	}
	return &runtimeapi.ImageStatusResponse{Image: img.toCRI()}, nil
}

// ListImages lists all images, or the one the filter names, by ID.
func (r *Runtime) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := r.listImages(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

// StreamImages sends the ListImages result in chunks.
func (r *Runtime) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := r.listImages(req.GetFilter())
	if err != nil {
		return err
	}
	return sendChunks(imgs, func(items []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: items})
	})
}

func (r *Runtime) listImages(f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name := f.GetImage().GetImage(); name != "" {
		img, err := r.findImage(name)
		if err != nil || img == nil {
			return nil, err
		}
		return []*runtimeapi.Image{img.toCRI()}, nil
	}
	out := make([]*runtimeapi.Image, 0, len(r.images))
	for _, img := range r.images {
		out = append(out, img.toCRI())
	}
	slices.SortFunc(out, func(a, b *runtimeapi.Image) int { return strings.Compare(a.Id, b.Id) })
	return out, nil
}

// RemoveImage forgets an image and all its names; removing an absent
// image succeeds. Like containerd, it does not check whether containers
// use the image: that is the kubelet's image GC's business.
func (r *Runtime) RemoveImage(_ context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, err := r.findImage(req.GetImage().GetImage())
	if err != nil {
		return nil, err
	}
	if img != nil {
		for _, ref := range slices.Concat(img.repoTags, img.repoDigests) {
			delete(r.imageRefs, ref)
		}
		delete(r.images, img.id)
		r.log.Debug("image removed", "imageRef", img.id)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the simulated images' sizes as the usage of one
// image filesystem, which also holds containers' writable layers.
func (r *Runtime) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var used uint64
	for _, img := range r.images {
		used += img.size
	}
	used += uint64(len(r.containers)) * writableLayerBytes
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  r.now(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: imageFsMountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: used},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(len(r.images))*imageInodes + uint64(len(r.containers))},
	}}}, nil
}

// imageInodes is the simulated inode count of one image.
const imageInodes = 100

func (img *image) toCRI() *runtimeapi.Image {
	return &runtimeapi.Image{
		Id:          img.id,
		RepoTags:    img.repoTags,
		RepoDigests: img.repoDigests,
		Size:        img.size,
		Spec:        &runtimeapi.ImageSpec{Image: img.id},
	}
}

// findImage resolves an image ID (with or without "sha256:") or a
// reference in any spelling ("busybox", "docker.io/library/busybox:latest")
// to an image, or to nil if there is none. Callers hold r.mu.
func (r *Runtime) findImage(ref string) (*image, error) {
	if isImageID(ref) {
		if !strings.HasPrefix(ref, "sha256:") {
			ref = "sha256:" + ref
		}
		return r.images[ref], nil
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parse image reference %q: %v", ref, err)
	}
	return r.images[r.imageRefs[named.String()]], nil
}

// isImageID reports whether ref is an image ID rather than a reference.
func isImageID(ref string) bool {
	hexPart := strings.TrimPrefix(ref, "sha256:")
	if len(hexPart) != 64 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}
