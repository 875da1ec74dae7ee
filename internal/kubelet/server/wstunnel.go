package server

import (
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// Port forwarding over WebSocket (kubectl since 1.31 tries it first)
// tunnels the SPDY port-forward protocol unchanged: each binary message
// carries SPDY bytes. So the kubelet only has to splice the WebSocket's
// messages and a SPDY upgrade to the runtime.
const (
	portForwardProtocol       = "portforward.k8s.io"
	portForwardTunnelProtocol = "SPDY/3.1+" + portForwardProtocol
)

// tunnelPortForward serves a port-forward session tunnelled in WebSocket.
func (s *Server) tunnelPortForward(w http.ResponseWriter, r *http.Request, target *url.URL) {
	if !slices.Contains(websocket.Subprotocols(r), portForwardTunnelProtocol) {
		// kubectl falls back to SPDY on a refused upgrade.
		httpError(w, http.StatusBadRequest, "port forwarding over WebSocket needs subprotocol %q", portForwardTunnelProtocol)
		return
	}
	ctx := r.Context()
	conn, _, err := dialUpgrade(ctx, target, []string{portForwardProtocol})
	if err != nil {
		httpError(w, http.StatusBadGateway, "%v", err)
		return
	}
	defer conn.Close()
	up := websocket.Upgrader{
		Subprotocols: []string{portForwardTunnelProtocol},
		CheckOrigin:  func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()

	// Each direction ends on its source's end; the first to end closes
	// both connections (deferred above), which ends the other.
	done := make(chan string, 2)
	go func() {
		defer func() { done <- "client" }()
		for {
			typ, msg, err := ws.NextReader()
			if err != nil || typ != websocket.BinaryMessage {
				return
			}
			if _, err := io.Copy(conn, msg); err != nil {
				return
			}
		}
	}()
	go func() {
		defer func() { done <- "runtime" }()
		buf := make([]byte, 32<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				_ = ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
				if werr := ws.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var first string
	select {
	case first = <-done:
	case <-ctx.Done():
		return
	}
	if first == "runtime" {
		// Let the client read the rest and answer the close.
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wsCloseGrace))
		select {
		case <-done:
		case <-ctx.Done():
		case <-time.After(wsCloseGrace):
		}
	}
}
