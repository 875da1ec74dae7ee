// Package resource describes each kind the API server serves, one small file
// per kind: its names and scope, upstream's defaults, validation, the columns
// `kubectl get` prints, selectable fields and subresources. The API server's
// REST handling is generic over these descriptions.
package resource

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver/auth"
)

// Resource describes one kind at one group/version.
type Resource struct {
	// Kind is the group, version and kind, e.g. apps/v1 Deployment.
	Kind schema.GroupVersionKind
	// Plural is the resource name in URLs ("deployments"); Singular is
	// lower-case Kind unless set.
	Plural, Singular string
	// Namespaced objects live in a namespace; others are cluster-scoped.
	Namespaced bool
	// ShortNames and Categories feed discovery ("deploy"; "all").
	ShortNames, Categories []string
	// New and NewList return empty typed objects.
	New, NewList func() runtime.Object

	// Default fills unset fields as upstream's defaulting does. It runs on
	// create and update, before validation. Nil means no defaults.
	Default func(obj runtime.Object)
	// PrepareCreate adjusts a new object before validation beyond plain
	// defaults (e.g. reset status, set the pod phase). Nil means nothing.
	PrepareCreate func(obj runtime.Object)
	// SetCreator records who creates the object, after PrepareCreate and
	// before validation: a CertificateSigningRequest's requestor is
	// whoever the server authenticated, never what the client claims.
	// Nil means nothing.
	SetCreator func(obj runtime.Object, user auth.UserInfo)
	// PrepareUpdate carries server-assigned values the client may omit on
	// update from the stored object (a Service's cluster IP, say), before
	// validation. Nil means nothing.
	PrepareUpdate func(obj, old runtime.Object)
	// Validate checks a new object; ValidateUpdate checks an update: the
	// whole new object as Validate does, plus the rules against the
	// stored object (immutable fields). Object metadata
	// (name, namespace, labels, annotations) is validated generically;
	// these check the rest. Nil means no checks.
	Validate       func(obj runtime.Object) field.ErrorList
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList

	// Columns and Row give the server-side table (`kubectl get`). Row
	// returns one cell per column, the name first. Nil Columns gives
	// upstream's default NAME, AGE table.
	Columns []metav1.TableColumnDefinition
	Row     func(obj runtime.Object) []any

	// Fields returns the kind's selectable fields besides metadata.name
	// and metadata.namespace (e.g. spec.nodeName and status.phase on pods).
	Fields func(obj runtime.Object) fields.Set

	// Generation: metadata.generation starts at 1 and bumps on each
	// change outside metadata and status (kinds with a spec).
	Generation bool
	// Status: the kind has a status subresource, so the main resource
	// ignores status changes and /status ignores everything else.
	Status bool
	// Parts are subresources through which a client updates one part of
	// an object and nothing else (certificatesigningrequests/approval
	// changes only the approval conditions). Each maps a name to the merge
	// that builds the object to store from the client's object and the
	// stored one, which it must not modify. An entry named "status"
	// replaces the default merge of a kind with Status set. Parts serve
	// get, update and patch.
	Parts map[string]func(obj, cur runtime.Object) runtime.Object
	// Scale, when set, serves the scale subresource.
	Scale *Scale
	// Binding: pods/binding.
	Binding bool
	// GracefulDelete, when set, returns the grace period a delete should
	// wait (nil for an immediate delete); pods use it.
	GracefulDelete func(obj runtime.Object, requested *int64) *int64
	// Connect holds, by subresource name, the subresources served by the
	// kubelet of the object's node (pods/log, pods/exec...).
	Connect map[string]*Connect
}

// Connect describes a subresource the API server answers by handing the
// request to the kubelet of the node the object is bound to.
type Connect struct {
	// Kind is the kind discovery names for the subresource (the options
	// kind, as upstream: PodExecOptions; Pod for logs).
	Kind schema.GroupVersionKind
	// Methods are the HTTP methods served; discovery lists GET as the
	// verb get and POST as create.
	Methods []string
	// Upgrade: the connection is upgraded (SPDY or WebSocket) and spliced
	// through to the kubelet; otherwise the kubelet's response body is
	// streamed back as it comes.
	Upgrade bool
	// Location checks the request's parameters against the stored object
	// and returns where on which node's kubelet to send it. Errors are
	// API errors (apierrors.NewBadRequest and the like).
	Location func(obj runtime.Object, query url.Values) (*ConnectTarget, error)
}

// ConnectTarget is where on a node's kubelet a connect request goes.
type ConnectTarget struct {
	// Node is the node's name.
	Node string
	// Path and Query are the kubelet's, e.g. /exec/ns/pod/container and
	// command=ls&output=1.
	Path  string
	Query url.Values
}

// Verbs returns the discovery verbs of the connect subresource, sorted.
func (c *Connect) Verbs() []string {
	var verbs []string
	for _, m := range c.Methods {
		switch m {
		case http.MethodGet:
			verbs = append(verbs, "get")
		case http.MethodPost:
			verbs = append(verbs, "create")
		}
	}
	slices.Sort(verbs)
	return verbs
}

// Scale reads and writes the replica count behind the scale subresource.
type Scale struct {
	SpecReplicas   func(obj runtime.Object) int32
	SetReplicas    func(obj runtime.Object, n int32)
	StatusReplicas func(obj runtime.Object) int32
	// Selector returns the label selector in string form.
	Selector func(obj runtime.Object) string
}

// Resource returns the group/version/resource triple.
func (r *Resource) Resource() schema.GroupVersionResource {
	return r.Kind.GroupVersion().WithResource(r.Plural)
}

// SingularName returns Singular or lower-case Kind.
func (r *Resource) SingularName() string {
	if r.Singular != "" {
		return r.Singular
	}
	return lower(r.Kind.Kind)
}

// Subresources lists the subresource names the kind serves.
func (r *Resource) Subresources() []string {
	var s []string
	if r.Status {
		s = append(s, "status")
	}
	var parts []string
	for name := range r.Parts {
		if name != "status" {
			parts = append(parts, name)
		}
	}
	sort.Strings(parts)
	s = append(s, parts...)
	if r.Scale != nil {
		s = append(s, "scale")
	}
	if r.Binding {
		s = append(s, "binding")
	}
	connect := make([]string, 0, len(r.Connect))
	for name := range r.Connect {
		connect = append(connect, name)
	}
	slices.Sort(connect)
	return append(s, connect...)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Column helpers shared by the kind files.

// NameColumn is upstream's first column.
var NameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}

// AgeColumn is upstream's AGE column.
var AgeColumn = metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}

// Age renders a creation timestamp as upstream does ("5m", "3d").
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}
