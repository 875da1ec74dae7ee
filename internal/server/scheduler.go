package server

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/scheduler"
)

// startScheduler runs the scheduler beside the API server, as a client of
// it over the loopback address, under the kube-system/skiff-scheduler
// Lease. It stops when ctx ends.
func (s *Server) startScheduler(ctx context.Context) error {
	if slices.Contains(s.cfg.Disable, "scheduler") {
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	// Binding is one request per pod; the default 5 QPS would cap
	// scheduling at a crawl.
	rc.QPS, rc.Burst = 2000, 4000
	useProtobuf(rc)
	sch, err := scheduler.New(scheduler.Config{REST: rc, Logger: s.log})
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := sch.Run(ctx); err != nil {
			s.log.Error("scheduler stopped", "err", err)
		}
	}()
	return nil
}
