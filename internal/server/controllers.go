package server

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/manager"
)

// startControllers runs the controller manager beside the API server, as a
// client of it over the loopback address. It stops when ctx ends.
func (s *Server) startControllers(ctx context.Context, kinds []*resource.Resource) error {
	if slices.Contains(s.cfg.Disable, "controller-manager") {
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	// The loopback client is the whole control plane's, not one user's:
	// at 500 QPS a 3,000-replica Deployment was capped at exactly
	// 500 pods/s by the client's own rate limiter, below what the API
	// server sustains.
	rc.QPS, rc.Burst = 5000, 10000
	var served []controller.Resource
	for _, k := range kinds {
		served = append(served, controller.Resource{GVR: k.Resource(), Kind: k.Kind.Kind, Namespaced: k.Namespaced})
	}
	m, err := manager.New(manager.Config{REST: rc, Resources: served, Disable: s.cfg.DisableControllers, Logger: s.log,
		Settings: controller.Settings{
			NodeMonitorGracePeriod:   s.cfg.NodeMonitorGracePeriod,
			ClusterCIDR:              s.cfg.ClusterCIDR,
			TerminatedPodGCThreshold: s.cfg.TerminatedPodGCThreshold,
			Signer:                   s.bundle,
		}})
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := m.Run(ctx); err != nil {
			s.log.Error("controller manager stopped", "err", err)
		}
	}()
	return nil
}
