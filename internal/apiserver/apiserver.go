// Package apiserver serves the Kubernetes REST API over the kinds described
// in package resource, storing them through package storage. The handling of
// every verb is generic; what differs between kinds lives in their
// descriptions and in the admission chain.
package apiserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/storage"
)

// MaxBodyBytes is the largest request body accepted, as upstream's 3 MiB.
const MaxBodyBytes = 3 << 20

// Version is what /version reports. Its minor version matches the linked
// client libraries so kubectl sees no skew.
var Version = version.Info{
	Major:        "1",
	Minor:        "37",
	GitVersion:   "v1.37.2+skiff",
	GitCommit:    "",
	GitTreeState: "clean",
	BuildDate:    "1970-01-01T00:00:00Z",
	GoVersion:    "",
	Compiler:     "gc",
	Platform:     "linux/amd64",
}

// StorageFactory returns the storage for one kind.
type StorageFactory func(r *resource.Resource) (storage.Interface, error)

// Config configures the API server.
type Config struct {
	// Resources are the kinds served; nil means resource.All().
	Resources []*resource.Resource
	// Storage opens each kind's store.
	Storage StorageFactory
	// Admission runs on every write, in order, after defaulting and
	// validation and before the object is stored (the namespace lifecycle
	// check always runs first).
	Admission []Admitter
	// Extra handles paths the API server itself does not (OpenAPI,
	// metrics), keyed by path prefix.
	Extra map[string]http.Handler
	// Ready, if set, gates /readyz in addition to the server's own checks.
	Ready func() error
	// ExternalAddress is advertised in /api's serverAddressByClientCIDRs.
	ExternalAddress string
	// Metrics records requests; nil records nothing.
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// KubeletTLS is how the connect subresources (pods/log, pods/exec,
	// pods/attach, pods/portforward) reach kubelets: a client certificate
	// the kubelets accept and RootCAs to check their serving
	// certificates by (the chain only; see kubeletTransport). Nil answers
	// those subresources with 503.
	KubeletTLS *tls.Config
}

// Server is the API server's HTTP handler over its stores.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	byGV      map[schema.GroupVersion]map[string]*resource.Resource
	byGVK     map[schema.GroupVersionKind]*resource.Resource
	stores    map[*resource.Resource]storage.Interface
	discovery *discovery
	mux       *http.ServeMux
	// encodings shares watch events' encodings between watch streams.
	encodings *encodingCache
	// protobuf holds the kinds with a protobuf encoding, served in it to
	// clients asking for it.
	protobuf map[*resource.Resource]bool
	// kubelet carries connect requests to kubelets; nil without
	// cfg.KubeletTLS.
	kubelet *http.Transport
}

// New builds the server and opens every kind's store.
func New(cfg Config) (*Server, error) {
	if cfg.Resources == nil {
		cfg.Resources = resource.All()
	}
	if cfg.Storage == nil {
		return nil, errors.New("apiserver: no storage")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		now:    cfg.Now,
		byGV:   map[schema.GroupVersion]map[string]*resource.Resource{},
		byGVK:  map[schema.GroupVersionKind]*resource.Resource{},
		stores: map[*resource.Resource]storage.Interface{},

		encodings: newEncodingCache(encodingCacheSize),
		protobuf:  map[*resource.Resource]bool{},
	}
	for _, r := range cfg.Resources {
		gv := r.Kind.GroupVersion()
		if s.byGV[gv] == nil {
			s.byGV[gv] = map[string]*resource.Resource{}
		}
		if _, dup := s.byGV[gv][r.Plural]; dup {
			return nil, fmt.Errorf("apiserver: resource %s registered twice", r.Resource())
		}
		s.byGV[gv][r.Plural] = r
		s.byGVK[r.Kind] = r
		st, err := cfg.Storage(r)
		if err != nil {
			return nil, fmt.Errorf("apiserver: storage for %s: %w", r.Resource(), err)
		}
		s.stores[r] = st
		s.protobuf[r] = hasProtobuf(r.New())
	}
	s.cfg.Admission = append([]Admitter{newNamespaceLifecycle(s)}, s.cfg.Admission...)
	s.kubelet = kubeletTransport(cfg.KubeletTLS)
	s.discovery = newDiscovery(cfg.Resources, cfg.ExternalAddress)
	s.mux = s.routes()
	return s, nil
}

// Handler returns the API's HTTP handler (without authentication, which
// the caller wraps around it).
func (s *Server) Handler() http.Handler { return s.mux }

// Store returns the store of a kind, for in-process bootstrap writes.
func (s *Server) Store(gvr schema.GroupVersionResource) (storage.Interface, *resource.Resource, bool) {
	r, ok := s.byGV[gvr.GroupVersion()][gvr.Resource]
	if !ok {
		return nil, nil, false
	}
	return s.stores[r], r, true
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		writeObject(w, http.StatusOK, mediaJSON, Version)
	})
	for _, p := range []string{"/healthz", "/livez"} {
		mux.HandleFunc(p, s.serveHealth(nil))
		mux.HandleFunc(p+"/", s.serveHealth(nil))
	}
	mux.HandleFunc("/readyz", s.serveHealth(s.cfg.Ready))
	mux.HandleFunc("/readyz/", s.serveHealth(s.cfg.Ready))
	mux.HandleFunc("/api", s.discovery.serveAPI)
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/apis", s.discovery.serveAPIs)
	mux.HandleFunc("/apis/", s.serveAPI)
	for prefix, h := range s.cfg.Extra {
		mux.Handle(prefix, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, notFoundPath(r.URL.Path))
	})
	return mux
}

// serveHealth answers the health endpoints as upstream: "ok" in plain text,
// or a check's failure with 500.
func (s *Server) serveHealth(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if check != nil {
			if err := check(); err != nil {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprintf(w, "[-]ready failed: %v\nreadyz check failed\n", err)
				return
			}
		}
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			fmt.Fprintf(w, "[+]ping ok\n[+]etcd ok\n%s check passed\n", strings.Trim(r.URL.Path, "/"))
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
}

// serveAPI routes /api/v1/... and /apis/<group>/<version>/... requests.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	parts := splitPath(r.URL.Path)
	var gv schema.GroupVersion
	switch {
	case parts[0] == "api" && len(parts) >= 2:
		gv = schema.GroupVersion{Version: parts[1]}
		parts = parts[2:]
	case parts[0] == "apis" && len(parts) == 2:
		s.discovery.serveGroup(w, r, parts[1])
		return
	case parts[0] == "apis" && len(parts) >= 3:
		gv = schema.GroupVersion{Group: parts[1], Version: parts[2]}
		parts = parts[3:]
	default:
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	kinds, ok := s.byGV[gv]
	if !ok {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	if len(parts) == 0 {
		s.discovery.serveResources(w, r, gv)
		return
	}
	// The deprecated /watch/ prefix means ?watch=true.
	watchPrefix := false
	if parts[0] == "watch" {
		watchPrefix, parts = true, parts[1:]
	}
	plural, ns, name, sub, ok := parseResourcePath(parts)
	res := kinds[plural]
	if !ok || res == nil {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	if ns != "" && !res.Namespaced {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	if sub != "" && !hasSub(res, sub) {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	info := &requestInfo{res: res, namespace: ns, name: name, subresource: sub, verb: verbFor(r, name != "")}
	if watchPrefix {
		info.verb = "watch"
	}
	if res.Kind.Kind == "Namespace" && name != "" {
		// A namespace's own namespace is empty; its name is the object.
		info.namespace = ""
	}
	s.serveResource(w, r, info)
}

func hasSub(r *resource.Resource, sub string) bool {
	for _, s := range r.Subresources() {
		if s == sub {
			return true
		}
	}
	return r.Kind.Kind == "Namespace" && sub == "finalize"
}

// key returns the etcd key of an object; name "" gives the prefix of a
// namespace or, with ns "" too, of the whole kind.
func key(r *resource.Resource, ns, name string) string {
	group := r.Kind.Group
	if group == "" {
		group = "core"
	}
	k := "/registry/" + group + "/" + r.Plural + "/"
	if ns != "" {
		k += ns + "/"
	}
	return k + name
}

// store returns a kind's store.
func (s *Server) store(r *resource.Resource) storage.Interface { return s.stores[r] }

// newObject returns a new empty object of a kind, typed and with its GVK set.
func newObject(r *resource.Resource) runtime.Object {
	obj := r.New()
	obj.GetObjectKind().SetGroupVersionKind(r.Kind)
	return obj
}

// KeyPrefix returns the etcd prefix under which a kind's objects live.
func KeyPrefix(r *resource.Resource) string { return key(r, "", "") }

// withKind returns obj with its apiVersion and kind set to gvk. Objects
// from the watch cache are shared between requests and must not be
// written, so one without its kind is copied first.
func withKind(obj runtime.Object, gvk schema.GroupVersionKind) runtime.Object {
	if obj.GetObjectKind().GroupVersionKind() == gvk {
		return obj
	}
	obj = obj.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj
}
