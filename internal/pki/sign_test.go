package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"
)

func TestSign(t *testing.T) {
	t.Parallel()
	b := mustEnsure(t, testConfig(t.TempDir()))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		wantEnd   time.Time // zero: the template's
		wantErr   bool
	}{
		{"one day", now, now.Add(24 * time.Hour), time.Time{}, false},
		{"capped at CA expiry", now, b.CA.NotAfter.Add(time.Hour), b.CA.NotAfter, false},
		{"empty validity", now, now, time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmpl := &x509.Certificate{
				Subject:     pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}},
				NotBefore:   tt.notBefore,
				NotAfter:    tt.notAfter,
				KeyUsage:    x509.KeyUsageDigitalSignature,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				IsCA:        true, // must be ignored
			}
			certPEM, err := b.Sign(tmpl, key.Public())
			if tt.wantErr {
				if err == nil {
					t.Fatal("Sign succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if tmpl.SerialNumber != nil || !tmpl.IsCA {
				t.Errorf("template modified: %+v", tmpl)
			}
			c, err := parseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: b.CAPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("does not chain to the CA: %v", err)
			}
			if c.IsCA || c.Subject.CommonName != "system:node:n1" || c.SerialNumber == nil {
				t.Errorf("IsCA %v CN %q serial %v", c.IsCA, c.Subject.CommonName, c.SerialNumber)
			}
			want := tt.wantEnd
			if want.IsZero() {
				want = tt.notAfter
			}
			if !c.NotAfter.Equal(want.UTC().Truncate(time.Second)) {
				t.Errorf("NotAfter = %v, want %v", c.NotAfter, want)
			}
		})
	}
}
