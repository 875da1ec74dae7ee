package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Restart back-off of the agent's own containerd: a crash-looping runtime
// is retried less and less often, and one that stayed up a while counts
// as healthy again.
const (
	runtimeRestartMin    = time.Second
	runtimeRestartMax    = 30 * time.Second
	runtimeRestartStable = time.Minute
)

// restartBackoff is the wait before restarting a daemon that exited: min
// after the first exit, doubling on each further exit up to max, and min
// again once a run lasted stable.
type restartBackoff struct {
	min, max, stable time.Duration
	// cur is the last wait handed out; 0 before the first exit.
	cur time.Duration
}

// next returns the wait after a run that lasted uptime.
func (b *restartBackoff) next(uptime time.Duration) time.Duration {
	if b.cur == 0 || uptime >= b.stable {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

// daemon is one run of a supervised process, as *containerd.Daemon: Run
// once, Ready closed when it serves.
type daemon interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// supervisor keeps a daemon running: when one exits on its own it starts
// a new one after a back-off. Only a daemon that never became ready ends
// the supervisor, since a first start that fails (a bad configuration, a
// missing binary) will not heal by retrying, whereas a runtime that served
// and then died (OOM-killed, crashed, killed by an operator) usually comes
// back, and the containers it ran outlive it in their shims.
type supervisor struct {
	// newDaemon makes the next run's daemon.
	newDaemon func() (daemon, error)
	backoff   restartBackoff
	log       *slog.Logger

	// ready is closed when the first daemon is ready; only Run's
	// goroutines close it, one at a time.
	ready chan struct{}
}

func newSupervisor(newDaemon func() (daemon, error), log *slog.Logger) *supervisor {
	return &supervisor{
		newDaemon: newDaemon,
		backoff:   restartBackoff{min: runtimeRestartMin, max: runtimeRestartMax, stable: runtimeRestartStable},
		log:       log,
		ready:     make(chan struct{}),
	}
}

// Ready is closed once the first daemon is ready.
func (s *supervisor) Ready() <-chan struct{} { return s.ready }

// Run runs daemons one after the other until ctx ends, and returns nil
// then. It returns an error only when the first daemon fails (or cannot be
// made) before it is ready.
func (s *supervisor) Run(ctx context.Context) error {
	for restarts := 1; ; restarts++ {
		started := time.Now()
		d, err := s.newDaemon()
		if err == nil {
			err = s.runOnce(ctx, d)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !isClosed(s.ready) {
			return err
		}
		if err == nil {
			err = errors.New("exited without error")
		}
		wait := s.backoff.next(time.Since(started))
		s.log.Error("container runtime exited; restarting it", "err", err, "restartIn", wait, "restarts", restarts)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// runOnce runs d, passing its readiness on as soon as it comes.
func (s *supervisor) runOnce(ctx context.Context, d daemon) error {
	var once sync.Once
	markReady := func() { once.Do(s.markReady) }
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-d.Ready():
			markReady()
		case <-done:
		}
	})
	err := d.Run(ctx)
	close(done)
	wg.Wait()
	// Becoming ready and exiting can both have happened by the time the
	// watcher looks, and select picks either.
	if isClosed(d.Ready()) {
		markReady()
	}
	return err
}

// markReady records that a daemon became ready.
func (s *supervisor) markReady() {
	if isClosed(s.ready) {
		s.log.Info("container runtime is back")
		return
	}
	close(s.ready)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
