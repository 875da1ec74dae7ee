// Package manager runs every controller as one controller manager. With
// several servers, the manager acts only while it holds the
// kube-system/skiff-controller-manager Lease.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/leader"
)

// LeaseName is the controller manager's Lease in kube-system.
const LeaseName = "skiff-controller-manager"

// Config configures the manager.
type Config struct {
	// REST is how controllers reach the API server.
	REST *rest.Config
	// Resources are the served kinds.
	Resources []controller.Resource
	// Disable names controllers not to run.
	Disable []string
	// Controllers overrides the registry (tests); nil means Controllers().
	Controllers []controller.Descriptor
	// Lease timing; zero values take package leader's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity of this manager in the Lease; default from package leader.
	Identity string
	// Settings are handed to every controller through its Context.
	Settings controller.Settings
	Logger   *slog.Logger
}

// Manager is the controller manager.
type Manager struct {
	cfg    Config
	client kubernetes.Interface
}

// New validates cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.REST == nil {
		return nil, errors.New("controller manager: REST config required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Controllers == nil {
		cfg.Controllers = Controllers()
	}
	rc := rest.CopyConfig(cfg.REST)
	rc.UserAgent = "skiff-controller-manager"
	// Protobuf: the controllers' informers decode every change to the
	// kinds they watch, in a fraction of the CPU JSON takes. The dynamic
	// and metadata clients built from rc set their own media types.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	cfg.REST = rc
	return &Manager{cfg: cfg, client: client}, nil
}

// Run campaigns for the lease and runs the controllers while leading. It
// returns when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	return leader.Run(ctx, leader.Config{
		Client: m.client, Name: LeaseName, Identity: m.cfg.Identity, Logger: m.cfg.Logger,
		LeaseDuration: m.cfg.LeaseDuration, RenewDeadline: m.cfg.RenewDeadline, RetryPeriod: m.cfg.RetryPeriod,
	}, func(ctx context.Context) {
		if err := m.runControllers(ctx); err != nil {
			m.cfg.Logger.Error("controller manager", "err", err)
		}
	})
}

// runControllers builds every enabled controller on fresh informers, starts
// them and waits for ctx to end and all of them to return.
func (m *Manager) runControllers(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(m.cfg.REST)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(m.cfg.REST)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	cc := &controller.Context{
		Client:            m.client,
		Dynamic:           dyn,
		Metadata:          meta,
		Informers:         informers.NewSharedInformerFactory(m.client, 0),
		MetadataInformers: metadatainformer.NewSharedInformerFactory(meta, 0),
		Recorder: func(component string) record.EventRecorder {
			return broadcaster.NewRecorder(clientscheme.Scheme, corev1.EventSource{Component: component})
		},
		Resources: m.cfg.Resources,
		Logger:    m.cfg.Logger,
		Now:       time.Now,
		Settings:  m.cfg.Settings,
	}
	var wg sync.WaitGroup
	for _, d := range m.cfg.Controllers {
		if slices.Contains(m.cfg.Disable, d.Name) {
			continue
		}
		start := time.Now()
		c, err := d.New(cc)
		if err != nil {
			return fmt.Errorf("controller %s: %w", d.Name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				m.cfg.Logger.Error("controller stopped", "controller", d.Name, "err", err)
			}
		}()
		m.cfg.Logger.Info("component ready", "component", "controller/"+d.Name, "took", time.Since(start).Round(time.Microsecond))
	}
	cc.Informers.Start(ctx.Done())
	cc.MetadataInformers.Start(ctx.Done())
	<-ctx.Done()
	cc.Informers.Shutdown()
	cc.MetadataInformers.Shutdown()
	wg.Wait()
	return nil
}
