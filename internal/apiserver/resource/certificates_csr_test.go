package resource

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/apiserver/auth"
)

// csrTestPEMs returns a PEM certificate request and a self-signed PEM
// certificate, made once per test.
func csrTestPEMs(t *testing.T) (request, cert []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:n1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
}

func csrTest(request []byte, mutate ...func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "node-csr-1"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    request,
			SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	for _, m := range mutate {
		m(csr)
	}
	return csr
}

func csrCond(t certificatesv1.RequestConditionType, s corev1.ConditionStatus) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{Type: t, Status: s}
}

func TestCSRValidate(t *testing.T) {
	t.Parallel()
	req, cert := csrTestPEMs(t)
	approved := csrCond(certificatesv1.CertificateApproved, corev1.ConditionTrue)
	type csr = certificatesv1.CertificateSigningRequest
	tests := []struct {
		name   string
		mutate func(*csr)
		want   []string
	}{
		{"valid", func(*csr) {}, nil},
		{"no request", func(c *csr) { c.Spec.Request = nil }, []string{"spec.request"}},
		{"request not PEM", func(c *csr) { c.Spec.Request = []byte("hello") }, []string{"spec.request"}},
		{"request wrong block", func(c *csr) { c.Spec.Request = cert }, []string{"spec.request"}},
		{"request trailing data", func(c *csr) { c.Spec.Request = append(slices.Clone(req), "junk"...) }, []string{"spec.request"}},
		{"no signer", func(c *csr) { c.Spec.SignerName = "" }, []string{"spec.signerName"}},
		{"signer without path", func(c *csr) { c.Spec.SignerName = "example.com" }, []string{"spec.signerName"}},
		{"signer two slashes", func(c *csr) { c.Spec.SignerName = "example.com/a/b" }, []string{"spec.signerName"}},
		{"signer unqualified domain", func(c *csr) { c.Spec.SignerName = "example/signer" }, []string{"spec.signerName"}},
		{"signer bad label", func(c *csr) { c.Spec.SignerName = "Example.com/signer" }, []string{"spec.signerName"}},
		{"signer bad path", func(c *csr) { c.Spec.SignerName = "example.com/Signer_1" }, []string{"spec.signerName"}},
		{"custom signer", func(c *csr) { c.Spec.SignerName = "example.com/my-signer" }, nil},
		{"no usages", func(c *csr) { c.Spec.Usages = nil }, []string{"spec.usages"}},
		{"unknown usage", func(c *csr) { c.Spec.Usages = append(c.Spec.Usages, "flying") }, []string{"spec.usages[2]"}},
		{"duplicate usage", func(c *csr) { c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageClientAuth) }, []string{"spec.usages[2]"}},
		{"short duration", func(c *csr) { c.Spec.ExpirationSeconds = ptr.To[int32](599) }, []string{"spec.expirationSeconds"}},
		{"ten minutes", func(c *csr) { c.Spec.ExpirationSeconds = ptr.To[int32](600) }, nil},
		{"approved", func(c *csr) { c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved} }, nil},
		{"approved and denied", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved, csrCond(certificatesv1.CertificateDenied, corev1.ConditionTrue)}
		}, []string{"status.conditions"}},
		{"approved false", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{csrCond(certificatesv1.CertificateApproved, corev1.ConditionFalse)}
		}, []string{"status.conditions[0].status"}},
		{"duplicate condition", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved, approved}
		}, []string{"status.conditions[1].type"}},
		{"condition without type", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{csrCond("", corev1.ConditionTrue)}
		}, []string{"status.conditions[0].type"}},
		{"custom condition bad status", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{csrCond("Example", "Maybe")}
		}, []string{"status.conditions[0].status"}},
		{"issued", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved}
			c.Status.Certificate = cert
		}, nil},
		{"issued without approval", func(c *csr) { c.Status.Certificate = cert }, []string{"status.certificate"}},
		{"issued garbage", func(c *csr) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{approved}
			c.Status.Certificate = req
		}, []string{"status.certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := csrTest(req, tt.mutate)
			r := CertificateSigningRequests()
			r.Default(c)
			wlAssertFields(t, r.Validate(c), tt.want...)
		})
	}
}

func TestCSRValidateUpdate(t *testing.T) {
	t.Parallel()
	req, cert := csrTestPEMs(t)
	_, other := csrTestPEMs(t)
	approved := csrCond(certificatesv1.CertificateApproved, corev1.ConditionTrue)
	failed := csrCond(certificatesv1.CertificateFailed, corev1.ConditionTrue)
	conds := func(cs ...certificatesv1.CertificateSigningRequestCondition) func(*certificatesv1.CertificateSigningRequest) {
		return func(c *certificatesv1.CertificateSigningRequest) { c.Status.Conditions = cs }
	}
	issued := func(pem []byte) func(*certificatesv1.CertificateSigningRequest) {
		return func(c *certificatesv1.CertificateSigningRequest) { c.Status.Certificate = pem }
	}
	tests := []struct {
		name     string
		old, new *certificatesv1.CertificateSigningRequest
		want     []string
	}{
		{"approve", csrTest(req), csrTest(req, conds(approved)), nil},
		{"issue", csrTest(req, conds(approved)), csrTest(req, conds(approved), issued(cert)), nil},
		{"fail", csrTest(req, conds(approved)), csrTest(req, conds(approved, failed)), nil},
		{"remove approval", csrTest(req, conds(approved)), csrTest(req), []string{"status.conditions"}},
		{"remove failure", csrTest(req, conds(approved, failed)), csrTest(req, conds(approved)), []string{"status.conditions"}},
		{"replace certificate", csrTest(req, conds(approved), issued(cert)), csrTest(req, conds(approved), issued(other)), []string{"status.certificate"}},
		{"drop certificate", csrTest(req, conds(approved), issued(cert)), csrTest(req, conds(approved)), []string{"status.certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlUpdate(CertificateSigningRequests(), tt.new, tt.old), tt.want...)
		})
	}
}

// TestCSRParts checks that each way in changes only its own part: the
// main resource neither spec nor status, /approval only the decision,
// /status everything but the decision.
func TestCSRParts(t *testing.T) {
	t.Parallel()
	req, cert := csrTestPEMs(t)
	r := CertificateSigningRequests()
	stored := csrTest(req, func(c *certificatesv1.CertificateSigningRequest) {
		c.Spec.Username = "system:node-bootstrap"
		c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AutoApproved",
			LastTransitionTime: metav1.NewTime(time.Unix(1000, 0)),
		}}
	})
	// The client's object tries to change everything.
	client := stored.DeepCopy()
	client.Labels = map[string]string{"a": "b"}
	client.Spec.Username = "admin"
	client.Spec.SignerName = "example.com/other"
	client.Status.Certificate = cert
	client.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{
		{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "Nope"},
		{Type: "Example", Status: corev1.ConditionTrue},
	}
	types := func(c *certificatesv1.CertificateSigningRequest) []string {
		var out []string
		for _, x := range c.Status.Conditions {
			out = append(out, string(x.Type))
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		name     string
		sub      string
		wantCert bool
		wantCond []string
	}{
		{"approval", "approval", false, []string{"Denied"}},
		{"status", "status", true, []string{"Approved", "Example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := stored.DeepCopy()
			out := r.Parts[tt.sub](client.DeepCopy(), stored).(*certificatesv1.CertificateSigningRequest)
			r.PrepareUpdate(out, stored)
			if !equalCSR(stored, before) {
				t.Fatalf("merge modified the stored object")
			}
			if out.Spec.Username != "system:node-bootstrap" || out.Spec.SignerName != stored.Spec.SignerName || len(out.Labels) != 0 {
				t.Errorf("spec or metadata changed through %s: %+v %v", tt.sub, out.Spec, out.Labels)
			}
			if got := len(out.Status.Certificate) > 0; got != tt.wantCert {
				t.Errorf("certificate set = %v, want %v", got, tt.wantCert)
			}
			if got := types(out); !slices.Equal(got, tt.wantCond) {
				t.Errorf("conditions = %v, want %v", got, tt.wantCond)
			}
			for _, c := range out.Status.Conditions {
				if c.LastUpdateTime.IsZero() || c.LastTransitionTime.IsZero() {
					t.Errorf("condition %s not stamped: %+v", c.Type, c)
				}
				if c.Type == certificatesv1.CertificateApproved && !c.LastTransitionTime.Equal(&stored.Status.Conditions[0].LastTransitionTime) {
					t.Errorf("kept condition lost its transition time: %v", c.LastTransitionTime)
				}
			}
		})
	}
}

func equalCSR(a, b *certificatesv1.CertificateSigningRequest) bool {
	return a.Spec.Username == b.Spec.Username && len(a.Status.Conditions) == len(b.Status.Conditions) &&
		string(a.Status.Certificate) == string(b.Status.Certificate) && len(a.Labels) == len(b.Labels)
}

func TestCSRCreate(t *testing.T) {
	t.Parallel()
	req, cert := csrTestPEMs(t)
	r := CertificateSigningRequests()
	c := csrTest(req, func(c *certificatesv1.CertificateSigningRequest) {
		c.Spec.Username, c.Spec.UID, c.Spec.Groups = "admin", "x", []string{"system:masters"}
		c.Spec.Extra = map[string]certificatesv1.ExtraValue{"k": {"v"}}
		c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{csrCond(certificatesv1.CertificateApproved, corev1.ConditionTrue)}
		c.Status.Certificate = cert
	})
	if errs := wlCreate(r, c); len(errs) > 0 {
		t.Fatalf("create: %v", errs)
	}
	r.SetCreator(c, auth.UserInfo{Name: "system:node-bootstrap", Groups: []string{"system:bootstrappers", "system:authenticated"}})
	if len(c.Status.Conditions) != 0 || len(c.Status.Certificate) != 0 {
		t.Errorf("status survived create: %+v", c.Status)
	}
	if c.Spec.Username != "system:node-bootstrap" || c.Spec.UID != "" || c.Spec.Extra != nil ||
		!slices.Equal(c.Spec.Groups, []string{"system:bootstrappers", "system:authenticated"}) {
		t.Errorf("requestor = %q %q %v %v, want the authenticated user", c.Spec.Username, c.Spec.UID, c.Spec.Groups, c.Spec.Extra)
	}
}

func TestCSRTable(t *testing.T) {
	t.Parallel()
	normal, wide := wlColumnNames(CertificateSigningRequests())
	if want := []string{"NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"}; !slices.Equal(normal, want) || len(wide) > 0 {
		t.Errorf("columns = %v | %v, want %v", normal, wide, want)
	}
	if got := CertificateSigningRequests().Subresources(); !slices.Equal(got, []string{"status", "approval"}) {
		t.Errorf("subresources = %v", got)
	}
	c := func(ts ...certificatesv1.RequestConditionType) []certificatesv1.CertificateSigningRequestCondition {
		var out []certificatesv1.CertificateSigningRequestCondition
		for _, x := range ts {
			out = append(out, csrCond(x, corev1.ConditionTrue))
		}
		return out
	}
	tests := []struct {
		name     string
		conds    []certificatesv1.CertificateSigningRequestCondition
		cert     bool
		seconds  *int32
		want     string
		duration string
	}{
		{"pending", nil, false, nil, "Pending", "<none>"},
		{"approved", c(certificatesv1.CertificateApproved), false, ptr.To[int32](3600), "Approved", "60m"},
		{"issued", c(certificatesv1.CertificateApproved), true, ptr.To[int32](86400), "Approved,Issued", "24h"},
		{"denied", c(certificatesv1.CertificateDenied), false, nil, "Denied", "<none>"},
		{"failed", c(certificatesv1.CertificateApproved, certificatesv1.CertificateFailed), false, nil, "Approved,Failed", "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			csr := csrTest([]byte("x"), func(x *certificatesv1.CertificateSigningRequest) {
				x.Spec.Username, x.Spec.ExpirationSeconds, x.Status.Conditions = "system:node:n1", tt.seconds, tt.conds
				if tt.cert {
					x.Status.Certificate = []byte("c")
				}
			})
			wlAssertRow(t, CertificateSigningRequests(), csr, []any{"node-csr-1", "<unknown>", certificatesv1.KubeAPIServerClientKubeletSignerName, "system:node:n1", tt.duration, tt.want})
		})
	}
}
