package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/skiffhq/skiff/internal/image"
)

// serve starts r on a loopback port and returns its address; cleanup stops
// it and checks that Serve returned nil promptly.
func serve(t *testing.T, r *Registry) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve still running 10s after its context ended")
		}
	})
	return ln.Addr().String()
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPushThenPull(t *testing.T) {
	if _, err := os.Stat(image.DefaultBusybox); err != nil {
		t.Skipf("%s missing (Debian busybox-static): %v", image.DefaultBusybox, err)
	}
	pause, err := image.Pause()
	if err != nil {
		t.Fatal(err)
	}
	busybox, err := image.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := New(logger)
	ctx := context.Background()

	pauseByDigest := "example.com/sandbox@" + digest(t, pause).String()
	// Pushed before anything listens: Push must not need the network.
	for _, p := range []struct {
		ref string
		img v1.Image
	}{
		{image.PauseRef, pause},
		{image.BusyboxRef, busybox},
		{"busybox", busybox},
		{pauseByDigest, pause},
	} {
		if err := r.Push(ctx, p.ref, p.img); err != nil {
			t.Fatal(err)
		}
	}
	addr := serve(t, r)

	for _, tc := range []struct {
		name, hasRef, pull string
		want               v1.Image
	}{
		{"pause", image.PauseRef, "pause:1", pause},
		{"busybox", image.BusyboxRef, "busybox:1", busybox},
		{"Docker Hub name", "docker.io/library/busybox:latest", "library/busybox:latest", busybox},
		{"by digest", pauseByDigest, "sandbox@" + digest(t, pause).String(), pause},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !r.Has(tc.hasRef) {
				t.Errorf("Has(%q) = false", tc.hasRef)
			}
			ref, err := name.ParseReference(addr+"/"+tc.pull, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			got, err := remote.Image(ref)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := digest(t, got), digest(t, tc.want); g != w {
				t.Errorf("pulled %s, want %s", g, w)
			}
			if err := validate.Image(got); err != nil {
				t.Errorf("pulled image: %v", err)
			}
		})
	}
}

func TestPullMissing(t *testing.T) {
	pause, err := image.Pause()
	if err != nil {
		t.Fatal(err)
	}
	r := New(nil)
	if err := r.Push(context.Background(), image.PauseRef, pause); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	for _, tc := range []struct{ name, pull, code string }{
		{"unknown tag", "pause:2", string(transport.ManifestUnknownErrorCode)},
		{"unknown repository", "nothere:1", string(transport.NameUnknownErrorCode)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r.Has("skiff.local/" + tc.pull) {
				t.Errorf("Has(%q) = true", tc.pull)
			}
			resp, err := http.Get("http://" + addr + "/v2/" + strings.Replace(tc.pull, ":", "/manifests/", 1))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), tc.code) {
				t.Errorf("GET = %d %s, want 404 %s", resp.StatusCode, body, tc.code)
			}

			ref, err := name.ParseReference(addr+"/"+tc.pull, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			_, err = remote.Image(ref)
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound || len(terr.Errors) == 0 || string(terr.Errors[0].Code) != tc.code {
				t.Errorf("remote.Image err = %v, want 404 %s", err, tc.code)
			}
		})
	}
}

func TestPushBadRef(t *testing.T) {
	pause, err := image.Pause()
	if err != nil {
		t.Fatal(err)
	}
	r := New(nil)
	if err := r.Push(context.Background(), "UPPER/Case::x", pause); err == nil {
		t.Error("Push with an invalid reference succeeded")
	}
	if r.Has("UPPER/Case::x") {
		t.Error("Has with an invalid reference = true")
	}
}
