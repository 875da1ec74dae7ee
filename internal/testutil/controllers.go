package testutil

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/controller"
)

// RunController builds one controller against the control plane with
// fresh informers and runs it until the test ends. Tests use it to run a
// controller with settings the manager does not pass (short grace
// periods); disable the manager's copy with cfg.DisableControllers.
func RunController(t testing.TB, cp *ControlPlane, build func(*controller.Context) (controller.Interface, error)) {
	t.Helper()
	client := kubernetes.NewForConfigOrDie(cp.Config)
	ctx, cancel := context.WithCancel(context.Background())
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	meta := metadata.NewForConfigOrDie(cp.Config)
	cc := &controller.Context{
		Client:            client,
		Dynamic:           dynamic.NewForConfigOrDie(cp.Config),
		Metadata:          meta,
		Informers:         informers.NewSharedInformerFactory(client, 0),
		MetadataInformers: metadatainformer.NewSharedInformerFactory(meta, 0),
		Recorder: func(component string) record.EventRecorder {
			return broadcaster.NewRecorder(clientscheme.Scheme, corev1.EventSource{Component: component})
		},
		Logger: testLogger().With("test", t.Name()),
		Now:    time.Now,
	}
	c, err := build(cc)
	if err != nil {
		cancel()
		t.Fatalf("build controller: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			slog.Default().Error("test controller stopped", "err", err)
		}
	}()
	cc.Informers.Start(ctx.Done())
	cc.MetadataInformers.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		<-done
		cc.Informers.Shutdown()
		cc.MetadataInformers.Shutdown()
		broadcaster.Shutdown()
	})
}
