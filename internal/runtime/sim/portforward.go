package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// portForwardProtocol is the only port-forward protocol over SPDY.
const portForwardProtocol = "portforward.k8s.io"

// PortForward returns a URL on the stream server for forwarding to a ready
// sandbox. Every port of a simulated pod is an echo server.
func (r *Runtime) PortForward(_ context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if r.streaming == nil {
		return nil, status.Error(codes.Unimplemented, "this simulated runtime has no stream server")
	}
	r.mu.Lock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if err == nil && !sb.ready {
		err = status.Errorf(codes.FailedPrecondition, "sandbox %q is not ready", sb.id)
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	url, err := r.streaming.register(&streamRequest{kind: kindPortForward})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PortForwardResponse{Url: url}, nil
}

// forwardPair is the error and data stream of one forwarded connection,
// tied together by the client's requestID header.
type forwardPair struct {
	port        string
	errorStream streamAndReply
	dataStream  streamAndReply
}

// servePortForward runs one port-forward session: the client opens an
// error and a data stream per connection it forwards, and each data
// stream is echoed until the client closes its side.
func (s *StreamServer) servePortForward(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	if _, err := httpstream.Handshake(req, w, []string{portForwardProtocol}); err != nil {
		s.log.Debug("port forward handshake failed", "error", err)
		return
	}
	arrived := make(chan streamAndReply)
	closing := make(chan struct{})
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(st httpstream.Stream, replySent <-chan struct{}) error {
		select {
		case arrived <- streamAndReply{st, replySent}:
			return nil
		case <-closing:
			return errors.New("connection is closing")
		}
	})
	if conn == nil {
		return
	}
	conn.SetIdleTimeout(streamIdleTimeout)
	var echoes sync.WaitGroup
	defer func() {
		close(closing)
		_ = conn.Close() // resets every stream, ending the echoes
		echoes.Wait()
	}()

	pairs := make(map[string]*forwardPair)
	for {
		var st streamAndReply
		select {
		case st = <-arrived:
		case <-conn.CloseChan():
			return
		case <-ctx.Done():
			return
		}
		h := st.Headers()
		id := h.Get(corev1.PortForwardRequestIDHeader)
		p := pairs[id]
		if p == nil {
			p = &forwardPair{port: h.Get(corev1.PortHeader)}
			pairs[id] = p
		}
		switch h.Get(corev1.StreamType) {
		case corev1.StreamTypeError:
			p.errorStream = st
		case corev1.StreamTypeData:
			p.dataStream = st
		default:
			_ = st.Reset()
			continue
		}
		if p.errorStream.Stream != nil && p.dataStream.Stream != nil {
			delete(pairs, id)
			echoes.Go(func() { s.echo(ctx, p) })
		}
	}
}

// echo serves one forwarded connection.
func (s *StreamServer) echo(ctx context.Context, p *forwardPair) {
	for _, sent := range []<-chan struct{}{p.errorStream.replySent, p.dataStream.replySent} {
		select {
		case <-sent:
		case <-ctx.Done():
			return
		}
	}
	defer func() { _ = p.errorStream.Close() }()
	if port, err := strconv.ParseUint(p.port, 10, 16); err != nil || port == 0 {
		// The client reads the error stream and reports its text.
		_, _ = fmt.Fprintf(p.errorStream, "invalid port %q", p.port)
		_ = p.dataStream.Reset()
		return
	}
	if _, err := io.Copy(p.dataStream, p.dataStream); err != nil {
		s.log.Debug("port forward echo ended", "port", p.port, "error", err)
	}
	_ = p.dataStream.Close()
}
