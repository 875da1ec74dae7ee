package csrsigning

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Identities the rules know, spelled as upstream spells them.
const (
	// NodeUserPrefix starts every node's user name: system:node:<name>.
	NodeUserPrefix = "system:node:"
	// NodesGroup is the one organization a node certificate carries.
	NodesGroup = "system:nodes"
	// BootstrappersGroup is the group of the node join token, which may
	// ask for any node's first certificates.
	BootstrappersGroup = "system:bootstrappers"
)

// Validity of what the controller signs.
const (
	// DefaultDuration is the validity of a certificate whose request names
	// none, and the most any request gets.
	DefaultDuration = 365 * 24 * time.Hour
	// backdate starts a certificate a little in the past, so that a host
	// whose clock is slightly behind accepts it at once.
	backdate = 5 * time.Minute
)

// Usage sets each signer accepts. The key encipherment usage is optional
// because only RSA keys use it; ECDSA requests leave it out.
var (
	kubeletClientUsages  = sets.New(certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth)
	kubeletServingUsages = sets.New(certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth)
	apiClientUsages      = sets.New(certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth)
)

// signs reports whether the controller signs for signer.
func signs(signer string) bool {
	switch signer {
	case certificatesv1.KubeAPIServerClientSignerName, certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName:
		return true
	}
	return false
}

// parseRequest decodes spec.request and checks that its signature holds,
// that is, that the requestor has the private key.
func parseRequest(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("request signature: %w", err)
	}
	return req, nil
}

// validate checks a request against the constraints of its signer. A
// request failing them can never be signed, approved or not.
func validate(csr *certificatesv1.CertificateSigningRequest, req *x509.CertificateRequest) error {
	usages := sets.New(csr.Spec.Usages...)
	switch csr.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		if err := validateNodeSubject(req); err != nil {
			return err
		}
		if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
			return errors.New("a node client certificate carries no subject alternative names")
		}
		return requireUsages(usages, kubeletClientUsages)
	case certificatesv1.KubeletServingSignerName:
		if err := validateNodeSubject(req); err != nil {
			return err
		}
		if len(req.DNSNames)+len(req.IPAddresses) == 0 {
			return errors.New("a node serving certificate needs at least one DNS name or IP address")
		}
		if len(req.EmailAddresses)+len(req.URIs) > 0 {
			return errors.New("a node serving certificate may name only DNS names and IP addresses")
		}
		return requireUsages(usages, kubeletServingUsages)
	case certificatesv1.KubeAPIServerClientSignerName:
		if req.Subject.CommonName == "" {
			return errors.New("a client certificate needs a common name: it is the user name")
		}
		if !usages.Has(certificatesv1.UsageClientAuth) || !apiClientUsages.IsSuperset(usages) {
			return fmt.Errorf("usages must include %q and be among %q", certificatesv1.UsageClientAuth, sets.List(apiClientUsages))
		}
		return nil
	}
	return fmt.Errorf("signer %q is not handled here", csr.Spec.SignerName)
}

func validateNodeSubject(req *x509.CertificateRequest) error {
	if name, ok := strings.CutPrefix(req.Subject.CommonName, NodeUserPrefix); !ok || name == "" {
		return fmt.Errorf("common name must be %q followed by the node name, not %q", NodeUserPrefix, req.Subject.CommonName)
	}
	if !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
		return fmt.Errorf("organization must be [%q], not %q", NodesGroup, req.Subject.Organization)
	}
	return nil
}

// requireUsages accepts exactly want, or want plus key encipherment.
func requireUsages(got, want sets.Set[certificatesv1.KeyUsage]) error {
	if got.Equal(want) || got.Equal(want.Clone().Insert(certificatesv1.UsageKeyEncipherment)) {
		return nil
	}
	return fmt.Errorf("usages must be %q, optionally with %q", sets.List(want), certificatesv1.UsageKeyEncipherment)
}

// autoApprove reports whether a valid request qualifies for approval
// without a human: a node's own certificates, asked for either by the
// node itself (renewal) or with the join token (first start). Anything
// else waits for `kubectl certificate approve`.
func autoApprove(csr *certificatesv1.CertificateSigningRequest, req *x509.CertificateRequest) bool {
	switch csr.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName, certificatesv1.KubeletServingSignerName:
	default:
		return false
	}
	if validate(csr, req) != nil {
		return false
	}
	return slices.Contains(csr.Spec.Groups, BootstrappersGroup) || csr.Spec.Username == req.Subject.CommonName
}

// template is the certificate the controller issues for an approved,
// valid request: the requested subject and names, the requested usages,
// and the requested duration within DefaultDuration.
func template(csr *certificatesv1.CertificateSigningRequest, req *x509.CertificateRequest, now time.Time) *x509.Certificate {
	d := DefaultDuration
	if s := csr.Spec.ExpirationSeconds; s != nil && time.Duration(*s)*time.Second < d {
		d = time.Duration(*s) * time.Second
	}
	t := &x509.Certificate{
		Subject:   req.Subject,
		NotBefore: now.Add(-backdate),
		NotAfter:  now.Add(d),
	}
	if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName {
		t.DNSNames, t.IPAddresses = req.DNSNames, req.IPAddresses
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageDigitalSignature:
			t.KeyUsage |= x509.KeyUsageDigitalSignature
		case certificatesv1.UsageKeyEncipherment:
			t.KeyUsage |= x509.KeyUsageKeyEncipherment
		case certificatesv1.UsageClientAuth:
			t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		case certificatesv1.UsageServerAuth:
			t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
	}
	return t
}
