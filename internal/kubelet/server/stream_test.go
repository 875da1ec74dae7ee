package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// tlsConfig is the API server's client TLS, for WebSocket dials by hand.
func (f *fixture) tlsConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{f.admin}, RootCAs: f.bundle.CAPool}
}

// restConfig is client-go's view of the kubelet, as the API server.
func (f *fixture) restConfig(t *testing.T) *rest.Config {
	t.Helper()
	certPEM, keyPEM, err := f.bundle.IssueClientCert("kube-apiserver-kubelet-client", []string{AllowedGroup})
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: f.url, TLSClientConfig: rest.TLSClientConfig{CAData: f.bundle.CAPEM, CertData: certPEM, KeyData: keyPEM}}
}

func TestParseStreamOptions(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		want    streamOptions
		wantErr string
	}{
		{name: "upstream names", query: "command=ls&command=-l&input=1&output=1&error=1",
			want: streamOptions{command: []string{"ls", "-l"}, stdin: true, stdout: true, stderr: true}},
		{name: "option names", query: "stdin=true&stdout=true&stderr=false",
			want: streamOptions{stdin: true, stdout: true}},
		{name: "tty drops stderr", query: "output=1&error=1&tty=1", want: streamOptions{stdout: true, tty: true}},
		{name: "no stream", query: "command=ls&tty=1", wantErr: "at least 1 of stdin, stdout, stderr"},
		{name: "bad flag", query: "output=maybe", wantErr: "invalid output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseStreamOptions(q)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.command, " ") != strings.Join(tt.want.command, " ") || got.stdin != tt.want.stdin ||
				got.stdout != tt.want.stdout || got.stderr != tt.want.stderr || got.tty != tt.want.tty {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRemoteCommand runs exec and attach through the kubelet to the
// simulated runtime with each client protocol kubectl may use.
func TestRemoteCommand(t *testing.T) {
	f := newFixture(t)
	cfg := f.restConfig(t)
	executors := []struct {
		name string
		new  func(u *url.URL) (remotecommand.Executor, error)
		// noStdinEOF: the protocol cannot tell the end of input, so a
		// command reading stdin to its end never finishes (v1's flaw).
		noStdinEOF bool
	}{
		{"spdy", func(u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
		}, false},
		{"websocket v5", func(u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
		}, false},
		{"websocket v4", func(u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutorForProtocols(cfg, http.MethodGet, u.String(), "v4.channel.k8s.io")
		}, false},
		{"websocket v1", func(u *url.URL) (remotecommand.Executor, error) {
			return remotecommand.NewWebSocketExecutorForProtocols(cfg, http.MethodGet, u.String(), "channel.k8s.io")
		}, true},
	}
	sessions := []struct {
		name  string
		path  string
		stdin bool
		tty   bool
		want  string
	}{
		{name: "exec", path: "/exec/default/web/app?command=echo&command=hi&output=1&error=1", want: "simulated exec: echo hi\n"},
		{name: "exec with stdin", path: "/exec/default/web/app?command=cat&input=1&output=1&error=1", stdin: true, want: "simulated exec: cat\n"},
		{name: "exec with tty", path: "/exec/default/web/app?command=sh&input=1&output=1&tty=1", stdin: true, tty: true, want: "simulated exec: sh\r\n"},
		{name: "attach", path: "/attach/default/web/app?output=1&error=1", want: "simulated container app started\n"},
	}
	for _, ex := range executors {
		for _, s := range sessions {
			if ex.noStdinEOF && s.stdin && !s.tty {
				continue
			}
			t.Run(ex.name+"/"+s.name, func(t *testing.T) {
				u, err := url.Parse(f.url + s.path)
				if err != nil {
					t.Fatal(err)
				}
				e, err := ex.new(u)
				if err != nil {
					t.Fatal(err)
				}
				var stdout, stderr bytes.Buffer
				opts := remotecommand.StreamOptions{Stdout: &stdout, Tty: s.tty}
				if !s.tty {
					opts.Stderr = &stderr
				}
				if s.stdin {
					opts.Stdin = strings.NewReader("input\n")
				}
				if s.tty {
					opts.TerminalSizeQueue = oneSize()
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := e.StreamWithContext(ctx, opts); err != nil {
					t.Fatalf("stream: %v (stderr %q)", err, stderr.String())
				}
				if stdout.String() != s.want {
					t.Errorf("stdout %q, want %q", stdout.String(), s.want)
				}
			})
		}
	}
}

// sizes reports the terminal sizes it holds, then none.
type sizes chan remotecommand.TerminalSize

func oneSize() sizes {
	s := make(sizes, 1)
	s <- remotecommand.TerminalSize{Width: 80, Height: 24}
	close(s)
	return s
}

func (s sizes) Next() *remotecommand.TerminalSize {
	size, ok := <-s
	if !ok {
		return nil
	}
	return &size
}

func TestRemoteCommandErrors(t *testing.T) {
	f := newFixture(t)
	cfg := f.restConfig(t)
	tests := []struct {
		name string
		path string
		want string
	}{
		{name: "unknown container", path: "/exec/default/web/nope?command=ls&output=1", want: `container "nope" not found in pod "web"`},
		{name: "unknown pod", path: "/attach/default/nope/app?output=1", want: `pod "nope" does not exist`},
		{name: "no command", path: "/exec/default/web/app?output=1", want: "you must specify at least one command"},
		{name: "waiting container", path: "/exec/default/web/waiting?command=ls&output=1", want: "is waiting to start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			for _, mk := range []func() (remotecommand.Executor, error){
				func() (remotecommand.Executor, error) { return remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u) },
				func() (remotecommand.Executor, error) {
					return remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, u.String())
				},
			} {
				e, err := mk()
				if err != nil {
					t.Fatal(err)
				}
				err = e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard})
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %v, want %q", err, tt.want)
				}
			}
		})
	}
}

// TestWebSocketBase64 speaks the base64 channel protocol by hand: the
// output comes as text frames, and v4 ends with a Success status.
func TestWebSocketBase64(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		proto     string
		wantError func(t *testing.T, msg []byte)
	}{
		{proto: "v4.base64.channel.k8s.io", wantError: func(t *testing.T, msg []byte) {
			var st metav1.Status
			if err := json.Unmarshal(msg, &st); err != nil || st.Status != metav1.StatusSuccess {
				t.Errorf("error channel %q, want a Success status", msg)
			}
		}},
		{proto: "base64.channel.k8s.io", wantError: func(t *testing.T, msg []byte) {
			if msg != nil {
				t.Errorf("error channel %q, want nothing on success", msg)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			d := websocket.Dialer{
				Subprotocols:    []string{tt.proto},
				TLSClientConfig: f.tlsConfig(),
			}
			u := strings.Replace(f.url, "https", "wss", 1) + "/exec/default/web/app?command=date&output=1"
			ws, resp, err := d.Dial(u, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			resp.Body.Close()
			if ws.Subprotocol() != tt.proto {
				t.Fatalf("subprotocol %q, want %q", ws.Subprotocol(), tt.proto)
			}
			var stdout []byte
			var errMsg []byte
			for {
				typ, msg, err := ws.ReadMessage()
				if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if typ != websocket.TextMessage {
					t.Fatalf("message type %d, want text", typ)
				}
				data, err := base64.StdEncoding.DecodeString(string(msg[1:]))
				if err != nil {
					t.Fatal(err)
				}
				switch msg[0] {
				case '1':
					stdout = append(stdout, data...)
				case '3':
					errMsg = append(errMsg, data...)
				default:
					t.Fatalf("message on channel %c", msg[0])
				}
			}
			if string(stdout) != "simulated exec: date\n" {
				t.Errorf("stdout %q", stdout)
			}
			tt.wantError(t, errMsg)
		})
	}
}

// TestWebSocketRefusals checks the refusals kubectl falls back to SPDY on.
func TestWebSocketRefusals(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, path, proto string
	}{
		{name: "unknown exec protocol", path: "/exec/default/web/app?command=ls&output=1", proto: "v9.channel.k8s.io"},
		{name: "port forward without tunnelling", path: "/portForward/default/web", proto: "v4.channel.k8s.io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{tt.proto}, TLSClientConfig: f.tlsConfig()}
			ws, resp, err := d.Dial(strings.Replace(f.url, "https", "wss", 1)+tt.path, nil)
			if err == nil {
				ws.Close()
				t.Fatal("upgrade accepted")
			}
			if resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("response %v, %v; want 400", resp, err)
			}
			resp.Body.Close()
		})
	}
}

// TestPortForward forwards a local port to the simulated pod, whose ports
// echo, over SPDY and over SPDY tunnelled in WebSocket.
func TestPortForward(t *testing.T) {
	f := newFixture(t)
	cfg := f.restConfig(t)
	u, err := url.Parse(f.url + "/portForward/default/web")
	if err != nil {
		t.Fatal(err)
	}
	dialers := []struct {
		name string
		new  func() (httpstream.Dialer, error)
	}{
		{"spdy", func() (httpstream.Dialer, error) {
			rt, up, err := spdy.RoundTripperFor(cfg)
			if err != nil {
				return nil, err
			}
			return spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u), nil
		}},
		{"websocket tunnel", func() (httpstream.Dialer, error) { return portforward.NewSPDYOverWebsocketDialer(u, cfg) }},
	}
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dialer, err := d.new()
			if err != nil {
				t.Fatal(err)
			}
			stop, ready := make(chan struct{}), make(chan struct{})
			pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- pf.ForwardPorts() }()
			defer func() {
				close(stop)
				if err := <-done; err != nil {
					t.Errorf("forward: %v", err)
				}
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("forward: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("port forward not ready")
			}
			ports, err := pf.GetPorts()
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // two connections over one session
				conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				msg := "ping " + strconv.Itoa(i) + "\n"
				if _, err := io.WriteString(conn, msg); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q, %v; want %q", buf, err, msg)
				}
				conn.Close()
			}
		})
	}
}
