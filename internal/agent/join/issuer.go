package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffhq/skiff/internal/pki"
)

// kind is which of the node's two certificates is wanted.
type kind int

const (
	kindClient kind = iota
	kindServing
)

// signer is the CSR signer that issues the kind.
func (k kind) signer() string {
	if k == kindServing {
		return certificatesv1.KubeletServingSignerName
	}
	return certificatesv1.KubeAPIServerClientKubeletSignerName
}

// usages are those the signer requires of an ECDSA key.
func (k kind) usages() []certificatesv1.KeyUsage {
	if k == kindServing {
		return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	return []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
}

// issuer turns a wanted certificate for key into a PEM certificate. id,
// when set, is the node's current identity; without it an issuer
// authenticates some other way.
type issuer interface {
	issue(ctx context.Context, k kind, key *ecdsa.PrivateKey, want wanted, id *identity) ([]byte, error)
}

// localIssuer signs with the CA key at hand.
type localIssuer struct{ bundle *pki.Bundle }

// localValidity matches what the CSR signer gives by default.
const localValidity = 365 * 24 * time.Hour

func (l localIssuer) issue(_ context.Context, _ kind, key *ecdsa.PrivateKey, want wanted, _ *identity) ([]byte, error) {
	now := time.Now()
	return l.bundle.Sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: want.cn, Organization: want.orgs},
		DNSNames:    want.dns,
		IPAddresses: want.ips,
		// Back-dated as the signer does, for hosts whose clocks lag.
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(localValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{want.usage},
	}, key.Public())
}

// csrIssuer asks the API server through a CertificateSigningRequest,
// authenticated as the node when it has an identity and with the join
// token otherwise.
type csrIssuer struct {
	server, token string
	caPEM         []byte
	log           *slog.Logger
}

// Polling for the certificate starts quick, since the built-in approver
// usually answers within milliseconds, and backs off for a human one.
const (
	pollFirst = 50 * time.Millisecond
	pollMax   = 2 * time.Second
)

func (c *csrIssuer) issue(ctx context.Context, k kind, key *ecdsa.PrivateKey, want wanted, id *identity) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: want.cn, Organization: want.orgs}, DNSNames: want.dns, IPAddresses: want.ips,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	rc := &rest.Config{Host: c.server, UserAgent: "skiff-agent-join", TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM}}
	if id != nil {
		rc.CertData, rc.KeyData = id.certPEM, id.keyPEM
	} else {
		rc.BearerToken = c.token
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	csrs := cs.CertificatesV1().CertificateSigningRequests()
	csr, err := csrs.Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-csr-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: k.signer(),
			Usages:     k.usages(),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create certificate signing request: %w", err)
	}
	c.log.Info("waiting for certificate", "csr", csr.Name, "signer", k.signer(), "asNode", id != nil)
	return waitIssued(ctx, csrs, csr.Name)
}

// waitIssued polls the request until it is issued, denied or failed. A
// poll rather than a watch: one request, briefly, and a poll survives a
// server restart without more code.
func waitIssued(ctx context.Context, csrs certclient.CertificateSigningRequestInterface, name string) ([]byte, error) {
	delay := pollFirst
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for certificate signing request %s: %w", name, ctx.Err())
		case <-timer.C:
		}
		csr, err := csrs.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), apierrors.IsUnauthorized(err), apierrors.IsForbidden(err):
			return nil, fmt.Errorf("certificate signing request %s: %w", name, err)
		case err == nil:
			for _, cond := range csr.Status.Conditions {
				switch cond.Type {
				case certificatesv1.CertificateDenied:
					return nil, fmt.Errorf("%w: %s: %s: %s", ErrDenied, name, cond.Reason, cond.Message)
				case certificatesv1.CertificateFailed:
					return nil, fmt.Errorf("%w: %s: %s: %s", ErrSigningFailed, name, cond.Reason, cond.Message)
				}
			}
			if len(csr.Status.Certificate) > 0 {
				return csr.Status.Certificate, nil
			}
		}
		// Anything else (pending, a server restarting) means ask again.
		timer.Reset(delay)
		delay = min(2*delay, pollMax)
	}
}
