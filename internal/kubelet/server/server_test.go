package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/runtime/sim"
)

// fakePods is the kubelet core's view of its pods, which the tests set.
type fakePods struct {
	mu         sync.Mutex
	sandboxes  map[string]string       // namespace/pod → sandbox ID
	containers map[string]ContainerRef // namespace/pod/container
}

func (f *fakePods) Container(ns, pod, ctr string) (ContainerRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sandboxes[ns+"/"+pod]; !ok {
		return ContainerRef{}, fmt.Errorf("%s/%s: %w", ns, pod, ErrPodNotFound)
	}
	ref, ok := f.containers[ns+"/"+pod+"/"+ctr]
	if !ok {
		return ContainerRef{}, fmt.Errorf("%s/%s/%s: %w", ns, pod, ctr, ErrContainerNotFound)
	}
	return ref, nil
}

func (f *fakePods) PodSandbox(ns, pod string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.sandboxes[ns+"/"+pod]
	if !ok {
		return "", fmt.Errorf("%s/%s: %w", ns, pod, ErrPodNotFound)
	}
	return id, nil
}

// fixture is a kubelet server in front of the simulated runtime, running
// pod default/web with a running container "app", a container "waiting"
// not created yet and a container "restarted" with a previous instance.
type fixture struct {
	srv     *Server
	url     string
	runtime runtimeapi.RuntimeServiceClient
	pods    *fakePods
	app     ContainerRef
	bundle  *pki.Bundle
	// admin and node are client certificates of the API server and of
	// a node.
	admin, node tls.Certificate
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	streams := sim.NewStreamServer(log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := streams.Serve(ctx, ln); err != nil {
			t.Errorf("stream server: %v", err)
		}
	})
	<-streams.Ready()
	conn, err := sim.New(sim.Config{Streaming: streams, Logger: log}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	images := runtimeapi.NewImageServiceClient(conn)
	if _, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		LogDirectory: logDir,
	}
	sb, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  sb.PodSandboxId,
		Config:        &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}, LogPath: "app/0.log"},
		SandboxConfig: sbCfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	app := ContainerRef{ID: c.ContainerId, LogPath: filepath.Join(logDir, "app/0.log")}
	previous := filepath.Join(logDir, "restarted", "0.log")
	if err := os.MkdirAll(filepath.Dir(previous), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(previous, []byte("2024-01-01T10:00:00Z stderr F crashed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pods := &fakePods{
		sandboxes: map[string]string{"default/web": sb.PodSandboxId},
		containers: map[string]ContainerRef{
			"default/web/app":       app,
			"default/web/waiting":   {Waiting: "ContainerCreating"},
			"default/web/restarted": {ID: c.ContainerId, LogPath: app.LogPath, PreviousID: "gone", PreviousLogPath: previous},
		},
	}

	bundle, err := pki.Ensure(pki.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	serving := keyPair(t)(bundle.IssueServingCert("kubelet", nil, []net.IP{net.IPv4(127, 0, 0, 1)}))
	f := &fixture{
		runtime: rt, pods: pods, app: app, bundle: bundle,
		admin: keyPair(t)(bundle.IssueClientCert("kube-apiserver-kubelet-client", []string{AllowedGroup})),
		node:  keyPair(t)(bundle.IssueClientCert("system:node:n1", []string{"system:nodes"})),
	}
	f.srv, err = New(Config{
		Addr: "127.0.0.1:0",
		TLS: &tls.Config{
			Certificates: []tls.Certificate{serving},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    bundle.CAPool,
			MinVersion:   tls.VersionTLS12,
		},
		Pods: pods, Runtime: rt, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := f.srv.Run(ctx); err != nil {
			t.Errorf("kubelet server: %v", err)
		}
	})
	<-f.srv.Ready()
	f.url = "https://" + f.srv.Addr()
	return f
}

// keyPair returns a function turning an issued PEM pair into a
// certificate, failing t on any error.
func keyPair(t *testing.T) func(certPEM, keyPEM []byte, err error) tls.Certificate {
	return func(certPEM, keyPEM []byte, err error) tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// client returns an HTTP client presenting cert.
func (f *fixture) client(cert tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: f.bundle.CAPool,
	}}}
}

// get fetches path as the API server and returns the status and body.
func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.client(f.admin).Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAccess(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		cert     *tls.Certificate
		path     string
		wantCode int
	}{
		{name: "healthz", cert: &f.node, path: "/healthz", wantCode: http.StatusOK},
		{name: "api server reads logs", cert: &f.admin, path: "/containerLogs/default/web/app", wantCode: http.StatusOK},
		{name: "node may not read logs", cert: &f.node, path: "/containerLogs/default/web/app", wantCode: http.StatusForbidden},
		{name: "node may not exec", cert: &f.node, path: "/exec/default/web/app?command=ls&output=1", wantCode: http.StatusForbidden},
		{name: "unknown path", cert: &f.admin, path: "/pods", wantCode: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client(*tt.cert).Get(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.bundle.CAPool}}}
		if resp, err := c.Get(f.url + "/healthz"); err == nil {
			resp.Body.Close()
			t.Fatal("request without a client certificate was served")
		}
	})
	t.Run("handler served without TLS", func(t *testing.T) {
		plain := httptest.NewServer(f.srv.Handler())
		defer plain.Close()
		resp, err := http.Get(plain.URL + "/containerLogs/default/web/app")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

func TestContainerLogs(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		path     string
		wantCode int
		want     string // the body, or the error's message
		wantPart bool   // want is part of the body
	}{
		{name: "logs", path: "/containerLogs/default/web/app", wantCode: 200, want: "simulated container app started\n"},
		{name: "timestamps", path: "/containerLogs/default/web/app?timestamps=true", wantCode: 200, want: "Z simulated container app started\n", wantPart: true},
		{name: "tail zero", path: "/containerLogs/default/web/app?tailLines=0", wantCode: 200, want: ""},
		{name: "previous", path: "/containerLogs/default/web/restarted?previous=true", wantCode: 200, want: "crashed\n"},
		{name: "no previous", path: "/containerLogs/default/web/app?previous=true", wantCode: 400,
			want: `previous terminated container "app" in pod "web" not found`},
		{name: "waiting", path: "/containerLogs/default/web/waiting", wantCode: 400,
			want: `container "waiting" in pod "web" is waiting to start: ContainerCreating`},
		{name: "unknown pod", path: "/containerLogs/default/nope/app", wantCode: 404, want: `pod "nope" does not exist`},
		{name: "unknown container", path: "/containerLogs/default/web/nope", wantCode: 404,
			want: `container "nope" not found in pod "web"`},
		{name: "bad option", path: "/containerLogs/default/web/app?tailLines=-3", wantCode: 400, want: `invalid tailLines "-3": must be an integer of at least 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.get(t, tt.path)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			if code != http.StatusOK {
				var st metav1.Status
				if err := json.Unmarshal([]byte(body), &st); err != nil || st.Message != tt.want || st.Code != int32(code) {
					t.Errorf("body %s, want a Status with message %q", body, tt.want)
				}
				return
			}
			if tt.wantPart && !strings.Contains(body, tt.want) || !tt.wantPart && body != tt.want {
				t.Errorf("body %q, want %q", body, tt.want)
			}
		})
	}
}

func TestContainerLogsFollow(t *testing.T) {
	f := newFixture(t)
	resp, err := f.client(f.admin).Get(f.url + "/containerLogs/default/web/app?follow=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("content type %q, want text/plain", ct)
	}
	lines := bufio.NewReader(resp.Body)
	readLine := func(want string) {
		t.Helper()
		got, err := lines.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	readLine("simulated container app started\n")
	appendFile(t, f.app.LogPath, time.Now().UTC().Format(time.RFC3339Nano)+" stdout F appended\n")
	readLine("appended\n")

	if _, err := f.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: f.app.ID, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(lines)
	if err != nil || len(rest) != 0 {
		t.Fatalf("after the container stopped: %q, %v; want the end of the stream", rest, err)
	}
}
