package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestImages(t *testing.T) {
	const digest = "sha256:4b8aa0d22b2e4a6e4a1b0d7b5c0b1e6a2f9a1c8e3d5f7b9c1e3a5d7f9b1c3e5a"
	tests := []struct {
		name       string
		pull       string
		canonical  string   // what the ID hashes
		aliases    []string // other names that find the image
		wantTags   []string
		wantDigest string // the repo digest, or its repository prefix if made up
	}{{
		name:       "familiar name",
		pull:       "busybox",
		canonical:  "docker.io/library/busybox:latest",
		aliases:    []string{"busybox:latest", "docker.io/library/busybox", "docker.io/library/busybox:latest"},
		wantTags:   []string{"docker.io/library/busybox:latest"},
		wantDigest: "docker.io/library/busybox@sha256:",
	}, {
		name:       "private registry with port",
		pull:       "127.0.0.1:5000/team/app:v1",
		canonical:  "127.0.0.1:5000/team/app:v1",
		wantTags:   []string{"127.0.0.1:5000/team/app:v1"},
		wantDigest: "127.0.0.1:5000/team/app@sha256:",
	}, {
		name:       "by digest",
		pull:       "registry.k8s.io/pause@" + digest,
		canonical:  "registry.k8s.io/pause@" + digest,
		wantDigest: "registry.k8s.io/pause@" + digest,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			_, c := start(t, Config{})
			pulled, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.pull}})
			if err != nil {
				t.Fatalf("PullImage: %v", err)
			}
			sum := sha256.Sum256([]byte(tt.canonical))
			wantID := "sha256:" + hex.EncodeToString(sum[:])
			if pulled.ImageRef != wantID {
				t.Fatalf("imageRef = %s, want %s", pulled.ImageRef, wantID)
			}
			// Pulling again is a no-op with the same answer.
			if again, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.pull}}); err != nil || again.ImageRef != wantID {
				t.Fatalf("second PullImage = %v, %v", again, err)
			}
			for _, name := range slices.Concat([]string{tt.pull, wantID, strings.TrimPrefix(wantID, "sha256:")}, tt.aliases) {
				st, err := c.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
				if err != nil || st.Image == nil {
					t.Fatalf("ImageStatus(%s) = %v, %v", name, st, err)
				}
				img := st.Image
				if img.Id != wantID || !slices.Equal(img.RepoTags, tt.wantTags) || len(img.RepoDigests) != 1 ||
					!strings.HasPrefix(img.RepoDigests[0], tt.wantDigest) || img.Size < 2<<20 {
					t.Fatalf("ImageStatus(%s) = %v", name, img)
				}
			}

			fs, err := c.img.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
			if err != nil || len(fs.ImageFilesystems) != 1 {
				t.Fatalf("ImageFsInfo = %v, %v", fs, err)
			}
			list, err := c.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
			if err != nil || len(list.Images) != 1 {
				t.Fatalf("ListImages = %v, %v", list, err)
			}
			if used := fs.ImageFilesystems[0].UsedBytes.Value; used != list.Images[0].Size {
				t.Errorf("image filesystem use %d, want the image's size %d", used, list.Images[0].Size)
			}

			for range 2 { // idempotent
				if _, err := c.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.pull}}); err != nil {
					t.Fatalf("RemoveImage: %v", err)
				}
			}
			for _, name := range []string{tt.pull, wantID} {
				st, err := c.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
				if err != nil || st.Image != nil {
					t.Fatalf("ImageStatus(%s) after remove = %v, %v; want no image and no error", name, st, err)
				}
			}
		})
	}
}

func TestImageList(t *testing.T) {
	ctx := t.Context()
	_, c := start(t, Config{})
	for _, name := range []string{"nginx:1.27", "busybox", "registry.k8s.io/pause:3.10"} {
		if _, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}}); err != nil {
			t.Fatalf("PullImage(%s): %v", name, err)
		}
	}
	tests := []struct {
		name   string
		filter *runtimeapi.ImageFilter
		want   []string // first repo tags
	}{
		{"all", nil, []string{"docker.io/library/busybox:latest", "docker.io/library/nginx:1.27", "registry.k8s.io/pause:3.10"}},
		{"by name", &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "nginx:1.27"}}, []string{"docker.io/library/nginx:1.27"}},
		{"absent", &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "nginx:1.28"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := c.img.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: tt.filter})
			if err != nil {
				t.Fatalf("ListImages: %v", err)
			}
			var got []string
			for _, img := range list.Images {
				got = append(got, img.RepoTags[0])
			}
			sameIDs(t, got, tt.want)
		})
	}

	_, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "Not/A Valid:ref"}})
	wantCode(t, "PullImage of a malformed reference", err, codes.InvalidArgument)
	_, err = c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: strings.Repeat("ab", 32)}})
	wantCode(t, "PullImage of an unknown image ID", err, codes.NotFound)
}
