// Package registry is an OCI distribution registry held in memory. The
// node agent serves it as a local mirror, so that images it imports from
// tarballs (and the ones it builds itself) reach containerd through the
// ordinary CRI PullImage path; tests use it as a registry that needs no
// network.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushHost is the registry name Push writes to. Requests for it never
// leave the process (see handlerTransport), so it only has to parse.
const pushHost = "push.skiff.invalid"

// Registry stores images in memory and serves them over the registry HTTP
// API. It ignores the host part of what is pulled: a request for any
// <host>/<repo>:<tag> is answered from repository <repo>.
type Registry struct {
	handler http.Handler
	logger  *slog.Logger
}

// New returns an empty registry. Its per-request log lines go to logger at
// debug level; a nil logger discards them.
func New(logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reqLog := slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	return &Registry{handler: ggcrregistry.New(ggcrregistry.Logger(reqLog)), logger: logger}
}

// Handler returns the registry's HTTP API (/v2/...), for serving it
// elsewhere.
func (r *Registry) Handler() http.Handler { return r.handler }

// Serve answers registry requests on ln until ctx ends, then shuts the
// server down and returns nil.
func (r *Registry) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(r.logger.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	r.logger.Info("serving image registry", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serve image registry: %w", err)
	case <-ctx.Done():
	}
	// Give pulls in flight a moment, then cut them: containerd retries.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve image registry: %w", err)
	}
	return nil
}

// Push stores img under ref's repository and tag (or digest), ignoring
// ref's registry host: "skiff.local/pause:1" is served as pause:1 and
// "busybox" as library/busybox:latest, as Docker Hub names it. It runs
// the registry API in-process and needs no listener.
func (r *Registry) Push(ctx context.Context, ref string, img v1.Image) error {
	target, err := localRef(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(target, img, remote.WithContext(ctx), remote.WithTransport(handlerTransport{r.handler})); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	r.logger.Debug("pushed image", "ref", ref, "repository", target.Context().RepositoryStr(), "identifier", target.Identifier())
	return nil
}

// Has reports whether a pull of ref would find a manifest.
func (r *Registry) Has(ref string) bool {
	target, err := localRef(ref)
	if err != nil {
		return false
	}
	path := "/v2/" + target.Context().RepositoryStr() + "/manifests/" + target.Identifier()
	req, err := http.NewRequest(http.MethodHead, "http://"+pushHost+path, http.NoBody)
	if err != nil {
		return false
	}
	rec := newRecorder()
	r.handler.ServeHTTP(rec, req)
	return rec.status == http.StatusOK
}

// localRef maps ref onto pushHost, keeping repository and tag or digest.
func localRef(ref string) (name.Reference, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	repo, err := name.NewRepository(pushHost + "/" + parsed.Context().RepositoryStr())
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if d, ok := parsed.(name.Digest); ok {
		return repo.Digest(d.DigestStr()), nil
	}
	return repo.Tag(parsed.Identifier()), nil
}
