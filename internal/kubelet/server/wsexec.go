package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// Channels of the WebSocket remote command protocols: every message
// starts with its channel's number (base64 protocols: its ASCII digit).
const (
	chanStdin byte = iota
	chanStdout
	chanStderr
	chanError
	chanResize
	// closeSignal starts a message [255, channel] that half-closes one of
	// the client's streams (stdin at end of input); v5 defines it.
	closeSignal byte = 255
)

// Timing of a WebSocket session: how long one write may block on a client
// that does not read, and how long to wait for the client's answer to
// our close before dropping the connection (closing at once could reset
// it and lose output the client has not read yet).
const (
	wsWriteTimeout = time.Minute
	wsCloseGrace   = 5 * time.Second
)

// wsProtocol is one WebSocket remote command subprotocol.
type wsProtocol struct {
	name string
	// base64 frames are text: the channel's digit, then base64 data.
	base64 bool
	// status: the error channel carries a metav1.Status (v4 and later)
	// rather than plain text.
	status bool
}

// wsProtocols are the subprotocols served; the client's order of
// preference decides. kubectl since 1.31 asks for v5 only and falls back
// to SPDY when refused.
var wsProtocols = []wsProtocol{
	// v5 adds the close signal, which every binary protocol honours:
	// client-go sends it whatever the version, and no channel 255 exists.
	{name: "v5.channel.k8s.io", status: true},
	{name: "v4.channel.k8s.io", status: true},
	{name: "v4.base64.channel.k8s.io", base64: true, status: true},
	{name: "channel.k8s.io"},
	{name: "base64.channel.k8s.io", base64: true},
}

// spdyStatusProtocol is the first SPDY remote command version whose error
// stream carries a metav1.Status.
const spdyStatusProtocol = "v4.channel.k8s.io"

// spdyProtocols are offered to the runtime, best first.
var spdyProtocols = []string{spdyStatusProtocol, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"}

// selectWSProtocol picks the first of the client's subprotocols served.
func selectWSProtocol(client []string) (wsProtocol, bool) {
	for _, c := range client {
		for _, p := range wsProtocols {
			if p.name == c {
				return p, true
			}
		}
	}
	return wsProtocol{}, false
}

// remoteStreams are the SPDY streams of one session with the runtime; the
// ones the session does not use are nil.
type remoteStreams struct {
	errors, stdin, stdout, stderr, resize httpstream.Stream
}

// openRemoteStreams creates the streams the runtime waits for, as a SPDY
// remote command client does: the error stream first, then the standard
// streams asked for, and a resize stream for a terminal (v3 and later).
func openRemoteStreams(conn httpstream.Connection, opts streamOptions, version string) (remoteStreams, error) {
	var rs remoteStreams
	streams := []struct {
		want bool
		kind string
		to   *httpstream.Stream
	}{
		{true, corev1.StreamTypeError, &rs.errors},
		{opts.stdin, corev1.StreamTypeStdin, &rs.stdin},
		{opts.stdout, corev1.StreamTypeStdout, &rs.stdout},
		{opts.stderr && !opts.tty, corev1.StreamTypeStderr, &rs.stderr},
		{opts.tty && version != "channel.k8s.io" && version != "v2.channel.k8s.io" && version != "", corev1.StreamTypeResize, &rs.resize},
	}
	for _, st := range streams {
		if !st.want {
			continue
		}
		h := http.Header{}
		h.Set(corev1.StreamType, st.kind)
		s, err := conn.CreateStream(h)
		if err != nil {
			return rs, fmt.Errorf("create %s stream: %w", st.kind, err)
		}
		*st.to = s
	}
	return rs, nil
}

// translateRemoteCommand serves an exec or attach session asked for over
// WebSocket by running it as a SPDY client of the runtime's streaming
// server and translating between the two.
func (s *Server) translateRemoteCommand(w http.ResponseWriter, r *http.Request, target *url.URL, opts streamOptions) {
	proto, ok := selectWSProtocol(websocket.Subprotocols(r))
	if !ok {
		httpError(w, http.StatusBadRequest, "unsupported WebSocket subprotocols %q", websocket.Subprotocols(r))
		return
	}
	ctx := r.Context()
	// Reach the runtime before upgrading, so that a failure is still an
	// HTTP error the client can show (or fall back to SPDY on).
	conn, version, err := dialUpgrade(ctx, target, spdyProtocols)
	if err != nil {
		httpError(w, http.StatusBadGateway, "%v", err)
		return
	}
	sc, err := spdy.NewClientConnection(conn)
	if err != nil {
		_ = conn.Close()
		httpError(w, http.StatusBadGateway, "spdy connection to container runtime: %v", err)
		return
	}
	defer sc.Close()
	streams, err := openRemoteStreams(sc, opts, version)
	if err != nil {
		httpError(w, http.StatusBadGateway, "%v", err)
		return
	}
	up := websocket.Upgrader{
		Subprotocols: []string{proto.name},
		// Only the API server reaches us, with a client certificate; a
		// browser's origin means nothing here.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer ws.Close()
	sess := &wsSession{ws: ws, proto: proto, spdyVersion: version, streams: streams, log: s.log}
	sess.run(ctx)
}

// wsSession is one translated session.
type wsSession struct {
	ws          *websocket.Conn
	proto       wsProtocol
	spdyVersion string
	streams     remoteStreams
	log         *slog.Logger
	wmu         sync.Mutex // one writer at a time on ws
}

// run moves data until the runtime has sent everything and the error
// stream has said how the command ended, or the client leaves, or ctx
// ends. The caller closes both connections after, which ends every
// goroutine started here.
func (s *wsSession) run(ctx context.Context) {
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		s.readClient()
	}()
	var wg sync.WaitGroup
	for _, out := range []struct {
		ch byte
		st httpstream.Stream
	}{{chanStdout, s.streams.stdout}, {chanStderr, s.streams.stderr}} {
		if out.st == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pump(out.ch, out.st)
		}()
	}
	errc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(s.streams.errors, 64<<10))
		errc <- b
	}()
	outDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(outDone)
	}()

	select {
	case <-outDone:
	case <-clientDone:
		return
	case <-ctx.Done():
		return
	}
	var msg []byte
	select {
	case msg = <-errc:
	case <-clientDone:
		return
	case <-ctx.Done():
		return
	}
	if out := s.errorMessage(msg); len(out) > 0 {
		if err := s.write(chanError, out); err != nil {
			return
		}
	}
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wsCloseGrace))
	select {
	case <-clientDone:
	case <-ctx.Done():
	case <-time.After(wsCloseGrace):
	}
}

// readClient dispatches the client's messages to the runtime's streams
// until the client closes the connection.
func (s *wsSession) readClient() {
	for {
		typ, data, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		ch, payload, err := s.decode(typ, data)
		if err != nil {
			s.log.Debug("websocket exec: bad message", "err", err)
			continue
		}
		var to httpstream.Stream
		switch {
		case ch == closeSignal && !s.proto.base64:
			if len(payload) == 1 && payload[0] == chanStdin && s.streams.stdin != nil {
				_ = s.streams.stdin.Close() // end of input: half-close
			}
			continue
		case ch == chanStdin:
			to = s.streams.stdin
		case ch == chanResize:
			to = s.streams.resize
		}
		if to != nil && len(payload) > 0 {
			if _, err := to.Write(payload); err != nil {
				s.log.Debug("websocket exec: write to runtime", "channel", ch, "err", err)
			}
		}
	}
}

// decode splits a client message into its channel and data.
func (s *wsSession) decode(typ int, data []byte) (byte, []byte, error) {
	if len(data) == 0 {
		return 0, nil, errors.New("empty message")
	}
	if !s.proto.base64 {
		if typ != websocket.BinaryMessage {
			return 0, nil, fmt.Errorf("message type %d, want binary", typ)
		}
		return data[0], data[1:], nil
	}
	payload, err := base64.StdEncoding.DecodeString(string(data[1:]))
	return data[0] - '0', payload, err
}

// pump copies one runtime output stream to its channel.
func (s *wsSession) pump(ch byte, from io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			if werr := s.write(ch, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// write sends data on a channel.
func (s *wsSession) write(ch byte, data []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if s.proto.base64 {
		msg := make([]byte, 1+base64.StdEncoding.EncodedLen(len(data)))
		msg[0] = '0' + ch
		base64.StdEncoding.Encode(msg[1:], data)
		return s.ws.WriteMessage(websocket.TextMessage, msg)
	}
	msg := make([]byte, 1+len(data))
	msg[0] = ch
	copy(msg[1:], data)
	return s.ws.WriteMessage(websocket.BinaryMessage, msg)
}

// errorMessage converts what the runtime sent on the error stream to what
// the client's protocol expects: a metav1.Status from v4 on, plain text
// before.
func (s *wsSession) errorMessage(msg []byte) []byte {
	runtimeStatus := s.spdyVersion == spdyStatusProtocol
	switch {
	case s.proto.status == runtimeStatus:
		return msg
	case s.proto.status:
		st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess}
		if len(msg) > 0 {
			st.Status, st.Reason, st.Message = metav1.StatusFailure, metav1.StatusReasonInternalError, string(msg)
		}
		b, _ := json.Marshal(st)
		return b
	default:
		var st metav1.Status
		if err := json.Unmarshal(msg, &st); err != nil {
			return msg
		}
		if st.Status == metav1.StatusSuccess {
			return nil
		}
		return []byte(st.Message)
	}
}
