package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// The remote command protocol versions served, preferred first. v4 reports
// the outcome as a metav1.Status, v3 adds the resize stream, v2 reports
// errors as plain text. v5 is websocket-only; the original v1 is not
// spoken by any client we support.
const (
	protocolV4 = "v4.channel.k8s.io"
	protocolV3 = "v3.channel.k8s.io"
	protocolV2 = "v2.channel.k8s.io"
)

var remoteCommandProtocols = []string{protocolV4, protocolV3, protocolV2}

// Exec returns a URL on the stream server where the client can "run" cmd
// in a running container: it prints "simulated exec: <cmd>", reads its
// stdin (if any, and without a tty) to the end, and exits 0.
func (r *Runtime) Exec(_ context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := r.checkStreaming(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	if len(req.GetCmd()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "cmd must not be empty")
	}
	r.mu.Lock()
	_, err := r.runningContainer(req.GetContainerId())
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	url, err := r.streaming.register(&streamRequest{
		kind: kindExec, stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr, tty: req.Tty,
		output: execOutput(req.Cmd),
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecResponse{Url: url}, nil
}

// Attach returns a URL on the stream server where the client sees the
// container's one line of output again; the session then ends, as if the
// client had detached.
func (r *Runtime) Attach(_ context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := r.checkStreaming(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return nil, err
	}
	r.mu.Lock()
	c, err := r.runningContainer(req.GetContainerId())
	var name string
	if err == nil {
		name = c.meta.Name
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	url, err := r.streaming.register(&streamRequest{
		kind: kindAttach, stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr, tty: req.Tty,
		output: "simulated container " + name + " started\n",
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.AttachResponse{Url: url}, nil
}

// checkStreaming validates the streams of an exec or attach request the
// way the kubelet's streaming server does.
func (r *Runtime) checkStreaming(stdin, stdout, stderr, tty bool) error {
	if r.streaming == nil {
		return status.Error(codes.Unimplemented, "this simulated runtime has no stream server")
	}
	if !stdin && !stdout && !stderr {
		return status.Error(codes.InvalidArgument, "one of stdin, stdout, or stderr must be set")
	}
	if tty && stderr {
		return status.Error(codes.InvalidArgument, "stdout and stderr cannot both be requested with a tty")
	}
	return nil
}

// streamAndReply is a stream the client opened, with the channel closed
// once our acceptance reached it; writing earlier could race the reply.
type streamAndReply struct {
	httpstream.Stream
	replySent <-chan struct{}
}

// serveRemoteCommand runs one exec or attach session: upgrade, collect
// the streams the request promised, print the output, report success.
func (s *StreamServer) serveRemoteCommand(w http.ResponseWriter, req *http.Request, sr *streamRequest) {
	ctx := req.Context()
	protocol, err := httpstream.Handshake(req, w, remoteCommandProtocols)
	if err != nil {
		s.log.Debug("remote command handshake failed", "error", err)
		return // Handshake has answered the client.
	}
	want := map[string]bool{corev1.StreamTypeError: true}
	want[corev1.StreamTypeStdin] = sr.stdin
	want[corev1.StreamTypeStdout] = sr.stdout
	// A tty merges stderr into stdout; a v3+ client with a tty sends
	// window sizes on a resize stream.
	want[corev1.StreamTypeStderr] = sr.stderr && !sr.tty
	want[corev1.StreamTypeResize] = sr.tty && protocol != protocolV2

	// Reads of what the client sends, which end when the deferred
	// conn.Close below resets the streams.
	var drains sync.WaitGroup
	defer drains.Wait()
	arrived := make(chan streamAndReply, len(want))
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(st httpstream.Stream, replySent <-chan struct{}) error {
		// Never block spdystream's frame loop: a client that opens more
		// streams than it asked for gets the extras refused.
		select {
		case arrived <- streamAndReply{st, replySent}:
			return nil
		default:
			return errors.New("unexpected stream")
		}
	})
	if conn == nil {
		return // The upgrader has answered the client.
	}
	defer conn.Close()
	conn.SetIdleTimeout(streamIdleTimeout)

	streams, err := collectStreams(ctx, conn, arrived, want)
	if err != nil {
		s.log.Debug("remote command streams incomplete", "kind", sr.kind, "error", err)
		return
	}
	// Read what the client sends so that spdystream never stalls on it;
	// the simulated process ignores input and window sizes.
	stdinDone := make(chan struct{})
	if st := streams[corev1.StreamTypeStdin]; st != nil {
		drains.Go(func() {
			defer close(stdinDone)
			_, _ = io.Copy(io.Discard, st)
		})
	} else {
		close(stdinDone)
	}
	if st := streams[corev1.StreamTypeResize]; st != nil {
		drains.Go(func() { _, _ = io.Copy(io.Discard, st) })
	}

	if st := streams[corev1.StreamTypeStdout]; st != nil {
		out := sr.output
		if sr.tty {
			out = strings.ReplaceAll(out, "\n", "\r\n") // a terminal's line discipline
		}
		if _, err := io.WriteString(st, out); err != nil {
			s.log.Debug("write simulated output", "error", err)
		}
	}
	// Without a terminal the process reads its input to the end, as a
	// filter would, so "echo x | kubectl exec -i" sends all of x. With
	// one there is no end of input to wait for: it exits at once.
	if !sr.tty {
		select {
		case <-stdinDone:
		case <-conn.CloseChan():
		case <-ctx.Done():
		}
	}
	// Closing our side of stdin too tells a v2+ client the process is done
	// with its input.
	for _, t := range []string{corev1.StreamTypeStdout, corev1.StreamTypeStderr, corev1.StreamTypeStdin} {
		if st := streams[t]; st != nil {
			_ = st.Close()
		}
	}
	errStream := streams[corev1.StreamTypeError]
	if protocol == protocolV4 {
		// Older versions signal success by writing nothing.
		if err := json.NewEncoder(errStream).Encode(metav1.Status{Status: metav1.StatusSuccess}); err != nil {
			s.log.Debug("write exec status", "error", err)
		}
	}
	_ = errStream.Close()
}

// collectStreams waits until the client has opened every stream in want
// (and no other) and our replies have gone out, or fails.
func collectStreams(ctx context.Context, conn httpstream.Connection, arrived <-chan streamAndReply, want map[string]bool) (map[string]httpstream.Stream, error) {
	needed := 0
	for _, ok := range want {
		if ok {
			needed++
		}
	}
	timeout := time.NewTimer(streamCreationTimeout)
	defer timeout.Stop()
	streams := make(map[string]httpstream.Stream, needed)
	var replies []<-chan struct{}
	for len(streams) < needed {
		select {
		case st := <-arrived:
			t := st.Headers().Get(corev1.StreamType)
			if !want[t] || streams[t] != nil {
				_ = st.Reset()
				return nil, fmt.Errorf("unexpected stream type %q", t)
			}
			streams[t] = st.Stream
			replies = append(replies, st.replySent)
		case <-timeout.C:
			return nil, fmt.Errorf("client opened %d of %d streams within %s", len(streams), needed, streamCreationTimeout)
		case <-conn.CloseChan():
			return nil, errors.New("connection closed before all streams were opened")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, sent := range replies {
		select {
		case <-sent:
		case <-timeout.C:
			return nil, errors.New("stream replies were not sent in time")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return streams, nil
}
