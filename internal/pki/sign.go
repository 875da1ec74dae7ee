package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Sign issues a certificate for pub from template, signed by the cluster
// CA: the CSR signer and the embedded node agent issue node certificates
// with it. It sets a fresh serial number and the CA as authority, marks
// the result as a leaf, and keeps NotAfter within the CA's own validity,
// since clients reject a leaf that outlives its issuer. template is not
// modified. The certificate is returned PEM-encoded.
func (b *Bundle) Sign(template *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	if template == nil || pub == nil {
		return nil, errors.New("pki: sign: template and public key are required")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := *template
	t.SerialNumber = serial
	t.IsCA, t.BasicConstraintsValid = false, true
	t.AuthorityKeyId = b.CA.SubjectKeyId
	if t.NotAfter.After(b.CA.NotAfter) {
		t.NotAfter = b.CA.NotAfter
	}
	if !t.NotAfter.After(t.NotBefore) {
		return nil, fmt.Errorf("pki: sign %q: validity ends before it starts", t.Subject.CommonName)
	}
	der, err := x509.CreateCertificate(rand.Reader, &t, b.CA, pub, b.caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %q: %w", t.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
