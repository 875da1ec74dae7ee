package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// parseLogOptions reads containerLogs' query parameters, which are
// PodLogOptions' as the API server forwards them. previous is returned
// apart: it chooses the file, not how to read it.
func parseLogOptions(q url.Values, now time.Time) (opts logOptions, previous bool, err error) {
	opts.tailLines = -1
	flags := []struct {
		name string
		to   *bool
	}{{"follow", &opts.follow}, {"timestamps", &opts.timestamps}, {"previous", &previous}}
	for _, f := range flags {
		if v := q.Get(f.name); v != "" {
			if *f.to, err = strconv.ParseBool(v); err != nil {
				return opts, false, fmt.Errorf("invalid %s %q: must be true or false", f.name, v)
			}
		}
	}
	ints := []struct {
		name string
		min  int64
		to   *int64
	}{{"tailLines", 0, &opts.tailLines}, {"limitBytes", 1, &opts.limitBytes}}
	for _, f := range ints {
		if v := q.Get(f.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < f.min {
				return opts, false, fmt.Errorf("invalid %s %q: must be an integer of at least %d", f.name, v, f.min)
			}
			*f.to = n
		}
	}
	sinceSeconds, sinceTime := q.Get("sinceSeconds"), q.Get("sinceTime")
	switch {
	case sinceSeconds != "" && sinceTime != "":
		return opts, false, errors.New("at most one of sinceTime or sinceSeconds may be specified")
	case sinceSeconds != "":
		n, err := strconv.ParseInt(sinceSeconds, 10, 64)
		if err != nil || n < 1 {
			return opts, false, fmt.Errorf("invalid sinceSeconds %q: must be a positive integer", sinceSeconds)
		}
		opts.since = now.Add(-time.Duration(n) * time.Second)
	case sinceTime != "":
		if opts.since, err = time.Parse(time.RFC3339, sinceTime); err != nil {
			return opts, false, fmt.Errorf("invalid sinceTime %q: %w", sinceTime, err)
		}
	}
	switch v := q.Get("stream"); v {
	case "", "All":
	case "Stdout":
		opts.stream = "stdout"
	case "Stderr":
		opts.stream = "stderr"
	default:
		return opts, false, fmt.Errorf("invalid stream %q: must be All, Stdout or Stderr", v)
	}
	return opts, previous, nil
}

// serveLogs answers GET /containerLogs/{namespace}/{pod}/{container}.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	pod, ctr := r.PathValue("pod"), r.PathValue("container")
	opts, previous, err := parseLogOptions(r.URL.Query(), time.Now())
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ref, ok := s.container(w, r)
	if !ok {
		return
	}
	id, path := ref.ID, ref.LogPath
	switch {
	case previous && ref.PreviousID == "":
		httpError(w, http.StatusBadRequest, "previous terminated container %q in pod %q not found", ctr, pod)
		return
	case previous:
		id, path = ref.PreviousID, ref.PreviousLogPath
	case ref.ID == "":
		httpError(w, http.StatusBadRequest, "container %q in pod %q is waiting to start: %s", ctr, pod, ref.Waiting)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	flush := func() { _ = rc.Flush() }
	running := func(ctx context.Context) bool { return s.running(ctx, id) }
	if err := copyLog(r.Context(), w, flush, path, opts, running, s.log); err != nil {
		// The status line is gone; all that is left is to say so here.
		s.log.Warn("container logs", "pod", r.PathValue("namespace")+"/"+pod, "container", ctr, "err", err)
	}
}

// container looks up the container a request names, answering the error
// itself when there is none.
func (s *Server) container(w http.ResponseWriter, r *http.Request) (ContainerRef, bool) {
	ns, pod, ctr := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	ref, err := s.cfg.Pods.Container(ns, pod, ctr)
	switch {
	case errors.Is(err, ErrPodNotFound):
		httpError(w, http.StatusNotFound, "pod %q does not exist", pod)
	case errors.Is(err, ErrContainerNotFound):
		httpError(w, http.StatusNotFound, "container %q not found in pod %q", ctr, pod)
	case err != nil:
		httpError(w, http.StatusInternalServerError, "%v", err)
	default:
		return ref, true
	}
	return ref, false
}

// running reports whether the runtime runs container id. Only a definite
// answer stops a follower; a runtime hiccup does not.
func (s *Server) running(ctx context.Context, id string) bool {
	resp, err := s.cfg.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	switch {
	case status.Code(err) == codes.NotFound:
		return false
	case err != nil:
		return ctx.Err() == nil
	}
	return resp.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING ||
		resp.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_CREATED
}
