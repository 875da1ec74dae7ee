// Package image builds the images every skiff node provides itself (the
// pod sandbox "pause" image and a busybox image) in Go, and reads and
// writes image tarballs in the docker-archive and OCI layout formats.
package image

import (
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PauseRef is the reference of the sandbox image every agent provides
// itself, so that pods start without any registry.
const PauseRef = "skiff.local/pause:1"

// Pause returns the sandbox image: one layer holding /pause, a static
// program of our own that, as PID 1 of the pod, ignores SIGCHLD (so the
// kernel reaps zombies), exits 0 on SIGTERM or SIGINT, and otherwise
// sleeps. It exists for linux/amd64 and linux/arm64.
func Pause() (v1.Image, error) {
	return pauseImage(runtime.GOARCH)
}

func pauseImage(goarch string) (v1.Image, error) {
	prog, err := pauseELF(goarch)
	if err != nil {
		return nil, err
	}
	layer, err := buildLayer([]entry{file("pause", 0o755, prog)})
	if err != nil {
		return nil, fmt.Errorf("pause layer: %w", err)
	}
	img, err := buildImage(layer, v1.Config{Entrypoint: []string{"/pause"}}, "skiff pause")
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	return img, nil
}
