package resource

import (
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver/auth"
)

// CertificateSigningRequests describes certificates.k8s.io/v1
// CertificateSigningRequests, through which nodes (and anyone else) obtain
// certificates from the cluster CA. The spec is fixed at create and names
// the requestor as authenticated; approval goes through the approval
// subresource and the signer's result through status, so neither can
// overwrite the other.
func CertificateSigningRequests() *Resource {
	return &Resource{
		Kind:       certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest"),
		Plural:     "certificatesigningrequests",
		ShortNames: []string{"csr"},
		New:        func() runtime.Object { return &certificatesv1.CertificateSigningRequest{} },
		NewList:    func() runtime.Object { return &certificatesv1.CertificateSigningRequestList{} },
		Default: func(obj runtime.Object) {
			// Upstream's v1 defaulting: a condition without a status is true.
			csr := obj.(*certificatesv1.CertificateSigningRequest)
			for i := range csr.Status.Conditions {
				if csr.Status.Conditions[i].Status == "" {
					csr.Status.Conditions[i].Status = corev1.ConditionTrue
				}
			}
		},
		PrepareCreate: func(obj runtime.Object) {
			// A request cannot arrive pre-approved or pre-signed.
			obj.(*certificatesv1.CertificateSigningRequest).Status = certificatesv1.CertificateSigningRequestStatus{}
		},
		SetCreator: func(obj runtime.Object, u auth.UserInfo) {
			spec := &obj.(*certificatesv1.CertificateSigningRequest).Spec
			spec.Username, spec.UID, spec.Groups, spec.Extra = u.Name, "", u.Groups, nil
		},
		PrepareUpdate: func(obj, old runtime.Object) {
			// The spec is what was approved; it never changes after create.
			obj.(*certificatesv1.CertificateSigningRequest).Spec = *old.(*certificatesv1.CertificateSigningRequest).Spec.DeepCopy()
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateCSR(obj.(*certificatesv1.CertificateSigningRequest))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateCSRUpdate(obj.(*certificatesv1.CertificateSigningRequest), old.(*certificatesv1.CertificateSigningRequest))
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			AgeColumn,
			{Name: "SignerName", Type: "string", Description: certificatesv1.CertificateSigningRequestSpec{}.SwaggerDoc()["signerName"]},
			{Name: "Requestor", Type: "string", Description: certificatesv1.CertificateSigningRequestSpec{}.SwaggerDoc()["username"]},
			{Name: "RequestedDuration", Type: "string", Description: certificatesv1.CertificateSigningRequestSpec{}.SwaggerDoc()["expirationSeconds"]},
			{Name: "Condition", Type: "string", Description: certificatesv1.CertificateSigningRequestStatus{}.SwaggerDoc()["conditions"]},
		},
		Row: func(obj runtime.Object) []any { return csrRow(obj.(*certificatesv1.CertificateSigningRequest)) },
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.signerName": obj.(*certificatesv1.CertificateSigningRequest).Spec.SignerName}
		},
		Status: true,
		Parts: map[string]func(obj, cur runtime.Object) runtime.Object{
			"status":   mergeCSRStatus,
			"approval": mergeCSRApproval,
		},
	}
}

// isApproval reports whether a condition is an approver's decision.
func isApproval(t certificatesv1.RequestConditionType) bool {
	return t == certificatesv1.CertificateApproved || t == certificatesv1.CertificateDenied
}

// csrConditions returns the conditions of cs whose approval-ness is want.
func csrConditions(cs []certificatesv1.CertificateSigningRequestCondition, approval bool) []certificatesv1.CertificateSigningRequestCondition {
	var out []certificatesv1.CertificateSigningRequestCondition
	for _, c := range cs {
		if isApproval(c.Type) == approval {
			out = append(out, *c.DeepCopy())
		}
	}
	return out
}

// mergeCSRStatus serves /status: the signer writes the certificate and its
// own conditions (Failed), but the approval stays as the approver left it.
func mergeCSRStatus(obj, cur runtime.Object) runtime.Object {
	in, stored := obj.(*certificatesv1.CertificateSigningRequest), cur.(*certificatesv1.CertificateSigningRequest)
	out := stored.DeepCopy()
	out.Status = *in.Status.DeepCopy()
	out.Status.Conditions = append(csrConditions(in.Status.Conditions, false), csrConditions(stored.Status.Conditions, true)...)
	stampCSRConditions(out.Status.Conditions, stored.Status.Conditions, metav1.Now())
	return out
}

// mergeCSRApproval serves /approval: only the Approved and Denied
// conditions change, so an approver cannot forge a certificate.
func mergeCSRApproval(obj, cur runtime.Object) runtime.Object {
	in, stored := obj.(*certificatesv1.CertificateSigningRequest), cur.(*certificatesv1.CertificateSigningRequest)
	out := stored.DeepCopy()
	out.Status.Conditions = append(csrConditions(stored.Status.Conditions, false), csrConditions(in.Status.Conditions, true)...)
	stampCSRConditions(out.Status.Conditions, stored.Status.Conditions, metav1.Now())
	return out
}

// stampCSRConditions fills the timestamps a client left empty, as
// upstream does: a condition that keeps its type and status keeps its
// transition time.
func stampCSRConditions(cs, old []certificatesv1.CertificateSigningRequestCondition, now metav1.Time) {
	for i := range cs {
		c := &cs[i]
		if c.LastUpdateTime.IsZero() {
			c.LastUpdateTime = now
		}
		if !c.LastTransitionTime.IsZero() {
			continue
		}
		c.LastTransitionTime = now
		for _, o := range old {
			if o.Type == c.Type && o.Status == c.Status && !o.LastTransitionTime.IsZero() {
				c.LastTransitionTime = o.LastTransitionTime
				break
			}
		}
	}
}

func csrRow(csr *certificatesv1.CertificateSigningRequest) []any {
	requested := "<none>"
	if s := csr.Spec.ExpirationSeconds; s != nil {
		requested = duration.HumanDuration(time.Duration(*s) * time.Second)
	}
	return []any{csr.Name, Age(csr.CreationTimestamp), coreNoneOr(csr.Spec.SignerName), csr.Spec.Username, requested, csrCondition(csr)}
}

// csrCondition is the CONDITION column: the approval decision (a denial
// wins), then whether signing failed and whether a certificate is there.
func csrCondition(csr *certificatesv1.CertificateSigningRequest) string {
	var approved, denied, failed bool
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved:
			approved = true
		case certificatesv1.CertificateDenied:
			denied = true
		case certificatesv1.CertificateFailed:
			failed = true
		}
	}
	s := "Pending"
	switch {
	case denied:
		s = "Denied"
	case approved:
		s = "Approved"
	}
	if failed {
		s += ",Failed"
	}
	if len(csr.Status.Certificate) > 0 {
		s += ",Issued"
	}
	return s
}
