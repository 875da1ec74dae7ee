package etcd

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testConfig returns a config on free ports in a fresh directory.
func testConfig(t *testing.T, dir string, logs *bytes.Buffer) Config {
	t.Helper()
	cfg := Config{
		DataDir:         dir,
		ListenClientURL: "http://127.0.0.1:0",
		ListenPeerURL:   "http://127.0.0.1:0",
	}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	return cfg
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "no data dir", cfg: Config{}, wantErr: "DataDir is required"},
		{name: "bad scheme", cfg: Config{DataDir: "x", ListenClientURL: "unix:///tmp/s"}, wantErr: "scheme"},
		{name: "no port", cfg: Config{DataDir: "x", ListenPeerURL: "http://127.0.0.1"}, wantErr: "peer URL"},
		{name: "election too short", cfg: Config{DataDir: "x", HeartbeatInterval: 100 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond}, wantErr: "at least 5 heartbeats"},
		{name: "defaults", cfg: Config{DataDir: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			if got := s.Endpoints(); len(got) != 1 || got[0] != DefaultListenClientURL {
				t.Errorf("Endpoints() = %v, want [%s]", got, DefaultListenClientURL)
			}
			if s.ecfg.QuotaBackendBytes != DefaultQuotaBackendBytes || s.ecfg.AutoCompactionMode != "periodic" || s.ecfg.UnsafeNoFsync {
				t.Errorf("defaults not applied: quota=%d compaction=%q nofsync=%v", s.ecfg.QuotaBackendBytes, s.ecfg.AutoCompactionMode, s.ecfg.UnsafeNoFsync)
			}
		})
	}
}

// TestStartRestart starts a member, writes, stops it, starts it again on the
// same data dir and reads the write back, timing both starts.
func TestStartRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for i, name := range []string{"first start", "restart"} {
		t.Run(name, func(t *testing.T) {
			s, err := New(testConfig(t, dir, &logs))
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			took := time.Since(begin)
			t.Logf("%s: Start→Ready %v", name, took)
			select {
			case <-s.Ready():
			default:
				t.Fatal("Ready not closed after Start returned")
			}
			if took > time.Second {
				t.Errorf("%s took %v, want < 1s", name, took)
			}
			c := s.Client()
			if i == 0 {
				if _, err := c.Put(ctx, "/k", "v"); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := c.Get(ctx, "/k")
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
				t.Fatalf("Get(/k) = %v, want v", resp.Kvs)
			}
			eps := s.Endpoints()
			if len(eps) != 1 || strings.HasSuffix(eps[0], ":0") {
				t.Errorf("Endpoints() = %v, want one resolved URL", eps)
			}
			s.Close()
			s.Close() // idempotent
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("errors logged by a clean start and stop:\n%s", logs.String())
			}
			select {
			case <-s.Done():
			default:
				t.Fatal("Done not closed after Close")
			}
		})
	}
	if strings.Contains(logs.String(), "fast-forwarding election ticks") {
		t.Errorf("etcd info logs leaked through the warn threshold:\n%s", logs.String())
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	s, err := New(testConfig(t, t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready in 10s")
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
