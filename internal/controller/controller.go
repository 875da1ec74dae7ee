// Package controller holds what every controller is given and must offer.
// Each controller lives in its own package below this one and is an
// informer-fed, rate-limited workqueue draining into a level-triggered
// sync(key); package manager lists them and runs them under one lease.
package controller

import (
	"context"
	"crypto"
	"crypto/x509"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
)

// Context is what a controller is built from. Informer factories are
// shared by all controllers and started by the manager after every
// controller has registered its informers.
type Context struct {
	Client            kubernetes.Interface
	Dynamic           dynamic.Interface
	Metadata          metadata.Interface
	Informers         informers.SharedInformerFactory
	MetadataInformers metadatainformer.SharedInformerFactory
	// Recorder returns an event recorder that reports as component.
	Recorder func(component string) record.EventRecorder
	// Resources are the kinds the API server serves.
	Resources []Resource
	Logger    *slog.Logger
	// Now is the clock; tests inject one.
	Now func() time.Time
	// Settings are the operator's cluster-wide controller settings.
	Settings Settings
}

// Settings are the controller knobs `skiff server` takes as flags. They
// ride in the Context, one struct shared by all controllers, rather than
// as per-controller configs in the manager: the manager then knows nothing
// about any controller, a Descriptor stays one line that copies the fields
// it cares about into its package's own Config, and a new knob is a field
// here plus a flag. Zero values mean "the controller's default".
type Settings struct {
	// NodeMonitorGracePeriod is how long a node may be silent before it is
	// marked Ready=Unknown and tainted unreachable.
	NodeMonitorGracePeriod time.Duration
	// ClusterCIDR is the range node pod CIDRs are carved from.
	ClusterCIDR string
	// TerminatedPodGCThreshold is how many terminated pods may exist
	// before pod GC deletes the oldest; negative disables that part.
	TerminatedPodGCThreshold int
	// Signer signs approved CertificateSigningRequests with the cluster
	// CA; nil leaves them unsigned.
	Signer CertificateSigner
}

// CertificateSigner issues certificates from the cluster CA (a
// *pki.Bundle). Only the server holding the CA key has one.
type CertificateSigner interface {
	// Sign issues a PEM certificate for pub from template, with a fresh
	// serial number and NotAfter capped at the CA's expiry.
	Sign(template *x509.Certificate, pub crypto.PublicKey) ([]byte, error)
}

// Resource is one served kind, for controllers that act on all of them
// (namespace deletion, garbage collection).
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// Interface is a running controller: Run blocks until ctx ends.
type Interface interface {
	Run(ctx context.Context) error
}

// Descriptor names a controller and how to build it.
type Descriptor struct {
	Name string
	New  func(c *Context) (Interface, error)
}

// Clock returns the real clock, reading the time from now when it is set,
// so that a manager-wide clock (controller.Context.Now) reaches
// controllers that need a full clock.Clock for timers and delays.
func Clock(now func() time.Time) clock.WithTicker {
	return nowClock{now: now}
}

type nowClock struct {
	clock.RealClock
	now func() time.Time
}

func (n nowClock) Now() time.Time {
	if n.now != nil {
		return n.now()
	}
	return n.RealClock.Now()
}

func (n nowClock) Since(t time.Time) time.Duration { return n.Now().Sub(t) }
