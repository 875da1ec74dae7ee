package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	const short = time.Second // well below a minute: the runtime crash-loops
	tests := []struct {
		name    string
		uptimes []time.Duration
		want    []time.Duration
	}{
		{
			name:    "first exit waits the minimum",
			uptimes: []time.Duration{short},
			want:    []time.Duration{time.Second},
		},
		{
			name:    "doubles up to the maximum",
			uptimes: []time.Duration{short, short, short, short, short, short, short},
			want:    []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second},
		},
		{
			name:    "a minute of uptime resets it",
			uptimes: []time.Duration{short, short, short, time.Minute, short},
			want:    []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 1 * time.Second, 2 * time.Second},
		},
		{
			name:    "just under a minute does not",
			uptimes: []time.Duration{short, time.Minute - time.Millisecond},
			want:    []time.Duration{1 * time.Second, 2 * time.Second},
		},
		{
			name:    "a long first run still starts at the minimum",
			uptimes: []time.Duration{time.Hour, short},
			want:    []time.Duration{1 * time.Second, 2 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := restartBackoff{min: runtimeRestartMin, max: runtimeRestartMax, stable: runtimeRestartStable}
			for i, up := range tt.uptimes {
				if got := b.next(up); got != tt.want[i] {
					t.Fatalf("exit %d after %s: wait %s, want %s", i+1, up, got, tt.want[i])
				}
			}
		})
	}
}

// fakeDaemon becomes ready if told to, then exits with exitErr, or runs
// until its context ends when block is set.
type fakeDaemon struct {
	ready   chan struct{}
	becomes bool
	exitErr error
	block   bool
}

func (f *fakeDaemon) Ready() <-chan struct{} { return f.ready }

func (f *fakeDaemon) Run(ctx context.Context) error {
	if f.becomes {
		close(f.ready)
	}
	if f.block {
		<-ctx.Done()
		return nil
	}
	return f.exitErr
}

// script hands out the given daemons (or errors) in order; after the
// last it hands out daemons that run until cancelled.
type script struct {
	mu    sync.Mutex
	steps []any // *fakeDaemon or error
	made  int
	// last is closed when the blocking daemon after the script is made.
	last chan struct{}
}

func (s *script) next() (daemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.made++
	if s.made > len(s.steps) {
		if s.made == len(s.steps)+1 {
			close(s.last)
		}
		return &fakeDaemon{ready: make(chan struct{}), becomes: true, block: true}, nil
	}
	switch st := s.steps[s.made-1].(type) {
	case error:
		return nil, st
	default:
		return st.(*fakeDaemon), nil
	}
}

func TestSupervisor(t *testing.T) {
	errCrash := errors.New("crashed")
	errBadConfig := errors.New("bad config")
	fd := func(becomesReady bool, exit error) *fakeDaemon {
		return &fakeDaemon{ready: make(chan struct{}), becomes: becomesReady, exitErr: exit}
	}
	tests := []struct {
		name  string
		steps []any
		// wantErr: Run ends with it by itself; otherwise it reaches the
		// blocking daemon after the script and ends when cancelled.
		wantErr   error
		wantReady bool
	}{
		{name: "first start fails: no restart", steps: []any{fd(false, errCrash)}, wantErr: errCrash},
		{name: "first daemon cannot be made", steps: []any{errBadConfig}, wantErr: errBadConfig},
		{name: "exit after ready: restarted", steps: []any{fd(true, errCrash)}, wantReady: true},
		{name: "exit without error after ready: restarted", steps: []any{fd(true, nil)}, wantReady: true},
		{
			name:      "restarts that fail to start or cannot be made are retried",
			steps:     []any{fd(true, errCrash), fd(false, errCrash), errBadConfig, fd(true, errCrash)},
			wantReady: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := &script{steps: tt.steps, last: make(chan struct{})}
			s := newSupervisor(sc.next, slog.New(slog.NewTextHandler(io.Discard, nil)))
			s.backoff = restartBackoff{min: time.Millisecond, max: 4 * time.Millisecond, stable: time.Hour}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()

			if tt.wantErr != nil {
				select {
				case err := <-done:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Run = %v, want %v", err, tt.wantErr)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Run did not return")
				}
				if sc.made != len(tt.steps) {
					t.Errorf("made %d daemons, want %d", sc.made, len(tt.steps))
				}
				if isClosed(s.Ready()) != tt.wantReady {
					t.Errorf("ready = %v, want %v", isClosed(s.Ready()), tt.wantReady)
				}
				return
			}
			select {
			case <-sc.last:
			case err := <-done:
				t.Fatalf("Run returned %v before the script ran out", err)
			case <-time.After(10 * time.Second):
				t.Fatalf("made only %d daemons", sc.made)
			}
			if !isClosed(s.Ready()) {
				t.Error("supervisor not ready")
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after cancel = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
}

// A daemon that is ready and exits at once must count as having been
// ready, whichever the readiness watcher saw first.
func TestSupervisorReadyThenExitRace(t *testing.T) {
	for range 200 {
		sc := &script{steps: []any{&fakeDaemon{ready: make(chan struct{}), becomes: true, exitErr: errors.New("gone")}}, last: make(chan struct{})}
		s := newSupervisor(sc.next, slog.New(slog.NewTextHandler(io.Discard, nil)))
		s.backoff = restartBackoff{min: time.Millisecond, max: time.Millisecond, stable: time.Hour}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-sc.last:
		case err := <-done:
			cancel()
			t.Fatalf("Run returned %v instead of restarting", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSupervisorCancelDuringBackoff(t *testing.T) {
	sc := &script{steps: []any{&fakeDaemon{ready: make(chan struct{}), becomes: true, exitErr: errors.New("gone")}}, last: make(chan struct{})}
	s := newSupervisor(sc.next, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.backoff = restartBackoff{min: time.Hour, max: time.Hour, stable: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run kept waiting out the back-off after cancel")
	}
	if sc.made != 1 {
		t.Errorf("made %d daemons, want 1", sc.made)
	}
}
