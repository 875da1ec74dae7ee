package controller

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ErrRetry marks a sync that must run again for an expected reason (a
// namespace's contents still going away, a cache behind the controller's
// own writes): the key is retried with back-off and no warning is logged.
var ErrRetry = errors.New("retry later")

// Queue is the workqueue every controller drains: keys are
// "namespace/name" (or "name").
type Queue = workqueue.TypedRateLimitingInterface[string]

// RunWorkers waits for the informers in synced, then runs n workers that
// drain queue into sync until ctx ends, and shuts the queue down. It is
// the whole of a typical controller's Run.
func RunWorkers(ctx context.Context, queue Queue, n int, synced []cache.InformerSynced, sync func(context.Context, string) error, log *slog.Logger) error {
	defer queue.ShutDown()
	if len(synced) > 0 && !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	for range max(n, 1) {
		go wait.UntilWithContext(ctx, func(ctx context.Context) { Worker(ctx, queue, sync, log) }, time.Second)
	}
	<-ctx.Done()
	return nil
}

// Worker takes keys from queue and syncs them until the queue shuts down.
// A key whose sync fails is retried with the queue's back-off; a key that
// synced is forgotten, resetting its back-off. Level-triggered syncs make
// retrying safe: each looks at the whole current state again.
func Worker(ctx context.Context, queue Queue, sync func(context.Context, string) error, log *slog.Logger) {
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		err := sync(ctx, key)
		switch {
		case err == nil:
			queue.Forget(key)
		case errors.Is(err, ErrRetry):
			queue.AddRateLimited(key)
		default:
			log.Warn("sync failed", "key", key, "err", err)
			queue.AddRateLimited(key)
		}
		queue.Done(key)
	}
}
