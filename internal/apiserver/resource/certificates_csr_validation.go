package resource

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// csrMinExpirationSeconds is upstream's floor on a requested duration: a
// certificate that expires within minutes of issue is a mistake.
const csrMinExpirationSeconds = 600

// csrUsages are the key usages certificates.k8s.io/v1 knows.
var csrUsages = []string{
	string(certificatesv1.UsageSigning), string(certificatesv1.UsageDigitalSignature),
	string(certificatesv1.UsageContentCommitment), string(certificatesv1.UsageKeyEncipherment),
	string(certificatesv1.UsageKeyAgreement), string(certificatesv1.UsageDataEncipherment),
	string(certificatesv1.UsageCertSign), string(certificatesv1.UsageCRLSign),
	string(certificatesv1.UsageEncipherOnly), string(certificatesv1.UsageDecipherOnly),
	string(certificatesv1.UsageAny), string(certificatesv1.UsageServerAuth),
	string(certificatesv1.UsageClientAuth), string(certificatesv1.UsageCodeSigning),
	string(certificatesv1.UsageEmailProtection), string(certificatesv1.UsageSMIME),
	string(certificatesv1.UsageIPsecEndSystem), string(certificatesv1.UsageIPsecTunnel),
	string(certificatesv1.UsageIPsecUser), string(certificatesv1.UsageTimestamping),
	string(certificatesv1.UsageOCSPSigning), string(certificatesv1.UsageMicrosoftSGC),
	string(certificatesv1.UsageNetscapeSGC),
}

// csrConditionTypes are the condition types whose only meaningful status
// is True: each records a decision or an outcome, never its absence.
var csrConditionTypes = sets.New(certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed)

func validateCSR(csr *certificatesv1.CertificateSigningRequest) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(csr.Spec.Request) == 0 {
		errs = append(errs, field.Required(spec.Child("request"), ""))
	} else if _, err := parseCSRPEM(csr.Spec.Request); err != nil {
		errs = append(errs, field.Invalid(spec.Child("request"), "<request data>", err.Error()))
	}
	errs = append(errs, validateSignerName(spec.Child("signerName"), csr.Spec.SignerName)...)
	if s := csr.Spec.ExpirationSeconds; s != nil && *s < csrMinExpirationSeconds {
		errs = append(errs, field.Invalid(spec.Child("expirationSeconds"), *s,
			fmt.Sprintf("may not specify a duration less than %d seconds (10 minutes)", csrMinExpirationSeconds)))
	}
	if len(csr.Spec.Usages) == 0 {
		errs = append(errs, field.Required(spec.Child("usages"), "usages must be provided"))
	}
	seen := sets.New[certificatesv1.KeyUsage]()
	for i, u := range csr.Spec.Usages {
		p := spec.Child("usages").Index(i)
		if !coreContains(csrUsages, string(u)) {
			errs = append(errs, field.NotSupported(p, u, csrUsages))
		}
		if seen.Has(u) {
			errs = append(errs, field.Duplicate(p, u))
		}
		seen.Insert(u)
	}
	return append(errs, validateCSRStatus(&csr.Status)...)
}

func validateCSRStatus(st *certificatesv1.CertificateSigningRequestStatus) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("status", "conditions")
	types := sets.New[certificatesv1.RequestConditionType]()
	for i, c := range st.Conditions {
		p := path.Index(i)
		switch {
		case c.Type == "":
			errs = append(errs, field.Required(p.Child("type"), ""))
		case types.Has(c.Type):
			errs = append(errs, field.Duplicate(p.Child("type"), c.Type))
		}
		types.Insert(c.Type)
		switch {
		case c.Status == "":
			errs = append(errs, field.Required(p.Child("status"), ""))
		case csrConditionTypes.Has(c.Type) && c.Status != corev1.ConditionTrue:
			errs = append(errs, field.NotSupported(p.Child("status"), c.Status, []corev1.ConditionStatus{corev1.ConditionTrue}))
		case c.Status != corev1.ConditionTrue && c.Status != corev1.ConditionFalse && c.Status != corev1.ConditionUnknown:
			errs = append(errs, field.NotSupported(p.Child("status"), c.Status,
				[]corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown}))
		}
	}
	approved, denied := types.Has(certificatesv1.CertificateApproved), types.Has(certificatesv1.CertificateDenied)
	if approved && denied {
		errs = append(errs, field.Invalid(path, certificatesv1.CertificateDenied, "Approved and Denied conditions are mutually exclusive"))
	}
	if len(st.Certificate) > 0 {
		p := field.NewPath("status", "certificate")
		if err := validateCertificatesPEM(st.Certificate); err != nil {
			errs = append(errs, field.Invalid(p, "<certificate data>", err.Error()))
		}
		// A signer issues only what an approver allowed.
		if !approved || types.Has(certificatesv1.CertificateFailed) {
			errs = append(errs, field.Forbidden(p, "may only be set on an approved request that has not failed"))
		}
	}
	return errs
}

// validateCSRUpdate adds the history rules: a decision or an outcome,
// once recorded, stays, and so does an issued certificate.
func validateCSRUpdate(csr, old *certificatesv1.CertificateSigningRequest) field.ErrorList {
	errs := validateCSR(csr)
	have := sets.New[certificatesv1.RequestConditionType]()
	for _, c := range csr.Status.Conditions {
		have.Insert(c.Type)
	}
	path := field.NewPath("status", "conditions")
	for _, c := range old.Status.Conditions {
		if csrConditionTypes.Has(c.Type) && !have.Has(c.Type) {
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("updates may not remove a condition of type %q", c.Type)))
		}
	}
	if len(old.Status.Certificate) > 0 && !bytes.Equal(old.Status.Certificate, csr.Status.Certificate) {
		errs = append(errs, field.Forbidden(field.NewPath("status", "certificate"), "updates may not modify existing certificate content"))
	}
	return errs
}

// parseCSRPEM decodes a PEM "CERTIFICATE REQUEST" block, the form of
// spec.request, and parses it. Only whitespace may follow the block.
func parseCSRPEM(data []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("PEM block type must be CERTIFICATE REQUEST")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("extra data after the PEM block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	return req, nil
}

// validateCertificatesPEM accepts one or more PEM CERTIFICATE blocks,
// each a parseable X.509 certificate, and nothing else.
func validateCertificatesPEM(data []byte) error {
	n := 0
	for rest := data; len(bytes.TrimSpace(rest)) > 0; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return errors.New("must contain only PEM-encoded certificates")
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("only CERTIFICATE PEM blocks are allowed, found %q", block.Type)
		}
		if len(block.Headers) > 0 {
			return errors.New("no PEM block headers are permitted")
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
	}
	if n == 0 {
		return errors.New("at least one certificate must be present")
	}
	return nil
}

// validateSignerName: a signer is named like a resource owned by a domain,
// "example.com/signer-name", so names from different owners never clash.
func validateSignerName(path *field.Path, name string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path, "")}
	}
	domain, signer, ok := strings.Cut(name, "/")
	if !ok || strings.Contains(signer, "/") {
		return field.ErrorList{field.Invalid(path, name, "must be a fully qualified domain and path of the form 'example.com/signer-name'")}
	}
	var errs field.ErrorList
	if len(domain) > validation.DNS1123SubdomainMaxLength {
		errs = append(errs, field.TooLong(path, domain, validation.DNS1123SubdomainMaxLength))
	}
	labels := strings.Split(domain, ".")
	for _, l := range labels {
		// Report the first bad label only: later ones would repeat the point.
		if msgs := validation.IsDNS1123Label(l); len(msgs) > 0 {
			for _, m := range msgs {
				errs = append(errs, field.Invalid(path, domain, fmt.Sprintf("validating label %q: %s", l, m)))
			}
			break
		}
	}
	if len(labels) < 2 {
		errs = append(errs, field.Invalid(path, domain, "should be a domain with at least two segments separated by dots"))
	}
	for _, seg := range strings.Split(signer, ".") {
		if msgs := validation.IsDNS1123Subdomain(seg); len(msgs) > 0 {
			for _, m := range msgs {
				errs = append(errs, field.Invalid(path, signer, fmt.Sprintf("validating segment %q: %s", seg, m)))
			}
			break
		}
	}
	// The path segment becomes a path component; bound it as upstream does.
	if maxLen := validation.DNS1123SubdomainMaxLength + validation.DNS1123LabelMaxLength + 1; len(signer) > maxLen {
		errs = append(errs, field.TooLong(path, signer, maxLen))
	}
	return errs
}
