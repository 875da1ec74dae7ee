package csrsigning

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/utils/ptr"
)

var (
	clientUsages  = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	servingUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	bootstrapper  = []string{"system:nodes", BootstrappersGroup, "system:authenticated"}
	nodeGroups    = []string{"system:nodes", "system:authenticated"}
)

// request is what a test asks for: the CSR's subject and names, and who
// sends it to which signer with which usages.
type request struct {
	cn       string
	orgs     []string
	dns      []string
	ips      []net.IP
	emails   []string
	uris     []string
	signer   string
	usages   []certificatesv1.KeyUsage
	user     string
	groups   []string
	duration *int32
}

func (r request) build(t *testing.T) (*certificatesv1.CertificateSigningRequest, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.cn, Organization: r.orgs}, DNSNames: r.dns, IPAddresses: r.ips, EmailAddresses: r.emails}
	for _, u := range r.uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	csr := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
		Request: data, SignerName: r.signer, Usages: r.usages, Username: r.user, Groups: r.groups, ExpirationSeconds: r.duration,
	}}
	return csr, data
}

// kubeletClient is a first client certificate request sent with the join
// token; kubeletServing the serving one sent by the node itself.
func kubeletClient() request {
	return request{cn: "system:node:n1", orgs: []string{NodesGroup}, signer: certificatesv1.KubeAPIServerClientKubeletSignerName,
		usages: clientUsages, user: "system:node-bootstrap", groups: bootstrapper}
}

func kubeletServing() request {
	return request{cn: "system:node:n1", orgs: []string{NodesGroup}, dns: []string{"n1"}, ips: []net.IP{net.ParseIP("10.0.0.5")},
		signer: certificatesv1.KubeletServingSignerName, usages: servingUsages, user: "system:node:n1", groups: nodeGroups}
}

func TestRules(t *testing.T) {
	t.Parallel()
	with := func(r request, f func(*request)) request { f(&r); return r }
	tests := []struct {
		name        string
		req         request
		wantValid   bool
		wantApprove bool
	}{
		{"client with join token", kubeletClient(), true, true},
		{"client renewal by the node", with(kubeletClient(), func(r *request) { r.user, r.groups = "system:node:n1", nodeGroups }), true, true},
		{"client with key encipherment", with(kubeletClient(), func(r *request) {
			r.usages = append(slices.Clone(clientUsages), certificatesv1.UsageKeyEncipherment)
		}), true, true},
		{"client for another node", with(kubeletClient(), func(r *request) { r.user, r.groups = "system:node:n2", nodeGroups }), true, false},
		{"client by an admin", with(kubeletClient(), func(r *request) { r.user, r.groups = "admin", []string{"system:masters"} }), true, false},
		{"client wrong CN", with(kubeletClient(), func(r *request) { r.cn = "n1" }), false, false},
		{"client empty node name", with(kubeletClient(), func(r *request) { r.cn = "system:node:" }), false, false},
		{"client wrong org", with(kubeletClient(), func(r *request) { r.orgs = []string{"system:masters"} }), false, false},
		{"client extra org", with(kubeletClient(), func(r *request) { r.orgs = []string{NodesGroup, "system:masters"} }), false, false},
		{"client with SAN", with(kubeletClient(), func(r *request) { r.dns = []string{"n1"} }), false, false},
		{"client server usage", with(kubeletClient(), func(r *request) {
			r.usages = append(slices.Clone(clientUsages), certificatesv1.UsageServerAuth)
		}), false, false},
		{"client missing digital signature", with(kubeletClient(), func(r *request) { r.usages = clientUsages[1:] }), false, false},
		{"serving by the node", kubeletServing(), true, true},
		{"serving with join token", with(kubeletServing(), func(r *request) { r.user, r.groups = "system:node-bootstrap", bootstrapper }), true, true},
		{"serving for another node", with(kubeletServing(), func(r *request) { r.user = "system:node:n2" }), true, false},
		{"serving IP only", with(kubeletServing(), func(r *request) { r.dns = nil }), true, true},
		{"serving no SAN", with(kubeletServing(), func(r *request) { r.dns, r.ips = nil, nil }), false, false},
		{"serving email SAN", with(kubeletServing(), func(r *request) { r.emails = []string{"a@example.com"} }), false, false},
		{"serving URI SAN", with(kubeletServing(), func(r *request) { r.uris = []string{"spiffe://cluster/n1"} }), false, false},
		{"serving client usage", with(kubeletServing(), func(r *request) { r.usages = clientUsages }), false, false},
		{"api client", request{cn: "jane", orgs: []string{"dev"}, signer: certificatesv1.KubeAPIServerClientSignerName, usages: clientUsages[1:], user: "admin"}, true, false},
		{"api client by bootstrapper", request{cn: "system:node:n1", orgs: []string{NodesGroup}, signer: certificatesv1.KubeAPIServerClientSignerName,
			usages: clientUsages, user: "system:node-bootstrap", groups: bootstrapper}, true, false},
		{"api client server usage", request{cn: "jane", signer: certificatesv1.KubeAPIServerClientSignerName, usages: servingUsages}, false, false},
		{"api client no CN", request{signer: certificatesv1.KubeAPIServerClientSignerName, usages: clientUsages}, false, false},
		{"other signer", with(kubeletClient(), func(r *request) { r.signer = "example.com/signer" }), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr, data := tt.req.build(t)
			req, err := parseRequest(data)
			if err != nil {
				t.Fatalf("parseRequest: %v", err)
			}
			if err := validate(csr, req); (err == nil) != tt.wantValid {
				t.Errorf("validate = %v, want valid %v", err, tt.wantValid)
			}
			if got := autoApprove(csr, req); got != tt.wantApprove {
				t.Errorf("autoApprove = %v, want %v", got, tt.wantApprove)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	t.Parallel()
	_, good := kubeletClient().build(t)
	block, _ := pem.Decode(good)
	tampered := slices.Clone(block.Bytes)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"valid", good, false},
		{"not PEM", []byte("nope"), true},
		{"wrong block", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), true},
		{"bad signature", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := parseRequest(tt.data); (err != nil) != tt.wantErr {
				t.Errorf("parseRequest error = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	with := func(r request, f func(*request)) request { f(&r); return r }
	tests := []struct {
		name    string
		req     request
		wantDur time.Duration
		wantKU  x509.KeyUsage
		wantEKU []x509.ExtKeyUsage
		wantSAN int
	}{
		{"client default duration", kubeletClient(), DefaultDuration, x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 0},
		{"client one hour", with(kubeletClient(), func(r *request) { r.duration = ptr.To[int32](3600) }), time.Hour,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 0},
		{"client asks for ten years", with(kubeletClient(), func(r *request) { r.duration = ptr.To[int32](10 * 365 * 86400) }), DefaultDuration,
			x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, 0},
		{"serving with key encipherment", with(kubeletServing(), func(r *request) {
			r.usages = append(slices.Clone(servingUsages), certificatesv1.UsageKeyEncipherment)
		}), DefaultDuration, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr, data := tt.req.build(t)
			req, err := parseRequest(data)
			if err != nil {
				t.Fatal(err)
			}
			got := template(csr, req, now)
			if got.NotAfter.Sub(now) != tt.wantDur || !got.NotBefore.Before(now) {
				t.Errorf("validity %v .. %v, want %v from %v", got.NotBefore, got.NotAfter, tt.wantDur, now)
			}
			if got.KeyUsage != tt.wantKU || !slices.Equal(got.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("usages %v %v, want %v %v", got.KeyUsage, got.ExtKeyUsage, tt.wantKU, tt.wantEKU)
			}
			if n := len(got.DNSNames) + len(got.IPAddresses); n != tt.wantSAN {
				t.Errorf("SANs = %d, want %d", n, tt.wantSAN)
			}
			if got.Subject.CommonName != tt.req.cn || !slices.Equal(got.Subject.Organization, tt.req.orgs) {
				t.Errorf("subject = %v", got.Subject)
			}
		})
	}
}
