package server

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/controller/namespace"
)

// startControllers runs the controllers beside the API server, as clients
// of it over its loopback address. They stop when ctx ends.
func (s *Server) startControllers(ctx context.Context, kinds []*resource.Resource) error {
	if slices.Contains(s.cfg.Disable, "controller-manager") {
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	rc.QPS, rc.Burst = 200, 400
	rc.UserAgent = "skiff-controller-manager"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("loopback client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	var namespaced []schema.GroupVersionResource
	for _, k := range kinds {
		if k.Namespaced {
			namespaced = append(namespaced, k.Resource())
		}
	}
	nsc, err := namespace.New(namespace.Config{Client: client, Dynamic: dyn, Resources: namespaced, Informers: factory, Logger: s.log})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go func() {
		if err := nsc.Run(ctx, 2); err != nil && ctx.Err() == nil {
			s.log.Error("controller stopped", "controller", namespace.Name, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	return nil
}
