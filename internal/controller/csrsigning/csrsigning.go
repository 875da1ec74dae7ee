// Package csrsigning approves and signs CertificateSigningRequests with
// the cluster CA: nodes joining with the join token, and renewing with
// their own identity, get their client and serving certificates without a
// human; other requests to the built-in signers are signed once someone
// approves them (`kubectl certificate approve`).
package csrsigning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "csrsigning"

// Condition reasons the controller writes.
const (
	// ReasonAutoApproved marks a request approved by the rules here.
	ReasonAutoApproved = "AutoApproved"
	// ReasonSignerValidationFailure marks a request the signer will never
	// sign because it breaks the signer's constraints.
	ReasonSignerValidationFailure = "SignerValidationFailure"
)

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// Controller approves and signs CertificateSigningRequests.
type Controller struct {
	client kubernetes.Interface
	log    *slog.Logger
	now    func() time.Time
	signer controller.CertificateSigner
	csrs   certlisters.CertificateSigningRequestLister
	synced []cache.InformerSynced
	queue  controller.Queue
}

// New returns a controller; Run starts it. Without cc.Settings.Signer it
// approves but signs nothing.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("csrsigning controller: Client and Informers are required")
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	now := cc.Now
	if now == nil {
		now = time.Now
	}
	inf := cc.Informers.Certificates().V1().CertificateSigningRequests()
	c := &Controller{
		client: cc.Client,
		log:    log.With("controller", Name),
		now:    now,
		signer: cc.Settings.Signer,
		csrs:   inf.Lister(),
		synced: []cache.InformerSynced{inf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
	}
	enqueue := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			c.queue.Add(csr.Name)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
	}); err != nil {
		return nil, fmt.Errorf("csrsigning controller: %w", err)
	}
	return c, nil
}

// Run processes requests until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, 2, c.synced, c.sync, c.log)
}

// sync moves one request a step: fail it if it can never be signed,
// approve it if the rules allow, sign it once approved. Each step is one
// write whose watch event brings the request back for the next.
func (c *Controller) sync(ctx context.Context, name string) error {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !signs(csr.Spec.SignerName) || len(csr.Status.Certificate) > 0 ||
		has(csr, certificatesv1.CertificateDenied) || has(csr, certificatesv1.CertificateFailed) {
		return nil
	}
	req, err := parseRequest(csr.Spec.Request)
	if err == nil {
		err = validate(csr, req)
	}
	if err != nil {
		c.log.Info("request fails its signer's constraints", "csr", name, "signer", csr.Spec.SignerName, "err", err)
		return c.writeStatus(ctx, csr, func(csr *certificatesv1.CertificateSigningRequest) {
			csr.Status.Conditions = append(csr.Status.Conditions, c.condition(certificatesv1.CertificateFailed, ReasonSignerValidationFailure, err.Error()))
		})
	}
	if !has(csr, certificatesv1.CertificateApproved) {
		if !autoApprove(csr, req) {
			return nil // a human decides
		}
		csr = csr.DeepCopy()
		csr.Status.Conditions = append(csr.Status.Conditions, c.condition(certificatesv1.CertificateApproved, ReasonAutoApproved,
			"node certificate requested by the node itself or with the join token"))
		if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
			return writeErr("approve", err)
		}
		c.log.Info("approved", "csr", name, "signer", csr.Spec.SignerName, "requestor", csr.Spec.Username, "subject", req.Subject.CommonName)
		return nil
	}
	if c.signer == nil {
		return nil
	}
	certPEM, err := c.signer.Sign(template(csr, req, c.now()), req.PublicKey)
	if err != nil {
		return fmt.Errorf("sign %s: %w", name, err)
	}
	if err := c.writeStatus(ctx, csr, func(csr *certificatesv1.CertificateSigningRequest) { csr.Status.Certificate = certPEM }); err != nil {
		return err
	}
	c.log.Info("issued", "csr", name, "signer", csr.Spec.SignerName, "subject", req.Subject.CommonName)
	return nil
}

// writeStatus applies change to a copy of csr and writes it through
// /status.
func (c *Controller) writeStatus(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, change func(*certificatesv1.CertificateSigningRequest)) error {
	csr = csr.DeepCopy()
	change(csr)
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return writeErr("update status", err)
	}
	return nil
}

// writeErr: a conflict or a deleted request only means the cache was
// behind; the next event or retry looks again.
func writeErr(what string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return controller.ErrRetry
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (c *Controller) condition(t certificatesv1.RequestConditionType, reason, msg string) certificatesv1.CertificateSigningRequestCondition {
	now := metav1.NewTime(c.now())
	return certificatesv1.CertificateSigningRequestCondition{
		Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now,
	}
}

func has(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
