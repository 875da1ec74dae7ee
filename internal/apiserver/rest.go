package apiserver

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/storage"
)

// codeRecorder remembers the status code for metrics.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection, which the
// connect subresources hijack to splice upgraded streams.
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// serveResource dispatches a resource request to its verb.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, info *requestInfo) {
	start := time.Now()
	rec := &codeRecorder{ResponseWriter: w}
	defer func() {
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		s.cfg.Metrics.observe(info, code, start)
	}()
	w = rec
	var err error
	if c := info.res.Connect[info.subresource]; c != nil {
		err = s.connect(w, r, info, c)
		if err != nil {
			writeError(w, r, err)
		}
		return
	}
	switch info.verb {
	case "get":
		err = s.get(w, r, info)
	case "list":
		err = s.list(w, r, info)
	case "watch":
		err = s.watch(w, r, info)
	case "create":
		err = s.create(w, r, info)
	case "update":
		err = s.update(w, r, info)
	case "patch":
		err = s.patch(w, r, info)
	case "delete":
		err = s.delete(w, r, info)
	case "deletecollection":
		err = s.deleteCollection(w, r, info)
	default:
		err = apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), r.Method)
	}
	if err != nil {
		writeError(w, r, err)
	}
}

// subresourceAllows reports whether a verb applies to a subresource of r.
func subresourceAllows(r *resource.Resource, sub, verb string) bool {
	if _, ok := r.Parts[sub]; ok {
		sub = "status" // a part is read and written as status is
	}
	switch sub {
	case "":
		return true
	case "status", "scale":
		return verb == "get" || verb == "update" || verb == "patch"
	case "binding":
		return verb == "create"
	case "finalize":
		return verb == "update"
	}
	return false
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if !subresourceAllows(info.res, info.subresource, "get") {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "get")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	obj, err := s.store(info.res).Get(r.Context(), key(info.res, info.namespace, info.name))
	if err != nil {
		return storageError(err, info.res.Resource().GroupResource(), info.name)
	}
	if info.subresource == "scale" {
		writeObject(w, http.StatusOK, out.media, toScale(info.res, obj))
		return nil
	}
	obj.GetObjectKind().SetGroupVersionKind(info.res.Kind)
	return s.writeAs(w, r, out, info.res, obj)
}

// writeAs renders one object as the client asked: itself, a Table, or
// metadata only.
func (s *Server) writeAs(w http.ResponseWriter, r *http.Request, out output, res *resource.Resource, obj runtime.Object) error {
	switch out.as {
	case "Table":
		t, err := toTable(res, []runtime.Object{obj}, includeObject(r), true)
		if err != nil {
			return err
		}
		writeObject(w, http.StatusOK, out.media, t)
	case "PartialObjectMetadata":
		writeObject(w, http.StatusOK, out.media, partialMetadata(obj))
	case "PartialObjectMetadataList":
		return apierrors.NewBadRequest("PartialObjectMetadataList is only served for lists")
	default:
		writeObject(w, http.StatusOK, out.media, obj)
	}
	return nil
}

// predicate builds the storage predicate from label and field selectors,
// rejecting fields the kind cannot select on as upstream does.
func (s *Server) predicate(r *http.Request, res *resource.Resource, name string) (storage.Predicate, error) {
	q := r.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return storage.Predicate{}, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return storage.Predicate{}, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
	}
	if name != "" {
		fs = fields.AndSelectors(fs, fields.OneTermEqualSelector("metadata.name", name))
	}
	attrs := attrsFunc(res)
	if !fs.Empty() {
		// Probe the kind's selectable fields with an empty object.
		_, known, _ := attrs(res.New())
		for _, req := range fs.Requirements() {
			if _, ok := known[req.Field]; !ok {
				return storage.Predicate{}, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
			}
		}
	}
	return storage.Predicate{Label: ls, Field: fs, Attrs: attrs}, nil
}

// attrsFunc returns a kind's labels and selectable fields.
func attrsFunc(res *resource.Resource) func(runtime.Object) (labels.Set, fields.Set, error) {
	return func(obj runtime.Object) (labels.Set, fields.Set, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		fs := fields.Set{"metadata.name": m.GetName()}
		if res.Namespaced {
			fs["metadata.namespace"] = m.GetNamespace()
		}
		if res.Fields != nil {
			for k, v := range res.Fields(obj) {
				fs[k] = v
			}
		}
		return labels.Set(m.GetLabels()), fs, nil
	}
}

// AttrsFunc exposes a kind's predicate attributes to the storage layer's
// watch cache, which filters with the same rules.
func AttrsFunc(res *resource.Resource) func(runtime.Object) (labels.Set, fields.Set, error) {
	return attrsFunc(res)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if info.subresource != "" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "list")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	q := r.URL.Query()
	pred, err := s.predicate(r, info.res, "")
	if err != nil {
		return err
	}
	var limit int64
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.ParseInt(l, 10, 64); err != nil || limit < 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q", l))
		}
	}
	opts := storage.ListOptions{
		ResourceVersion:      q.Get("resourceVersion"),
		ResourceVersionMatch: q.Get("resourceVersionMatch"),
		Predicate:            pred,
		Limit:                limit,
		Continue:             q.Get("continue"),
	}
	if err := validateListRV(opts); err != nil {
		return err
	}
	res, err := s.store(info.res).List(r.Context(), key(info.res, info.namespace, ""), opts)
	if err != nil {
		return storageError(err, info.res.Resource().GroupResource(), "")
	}
	lm := metav1.ListMeta{ResourceVersion: strconv.FormatInt(res.ResourceVersion, 10), Continue: res.Continue, RemainingItemCount: res.RemainingItemCount}
	switch out.as {
	case "Table":
		t, err := toTable(info.res, res.Items, includeObject(r), !isTrue(q.Get("noHeaders")))
		if err != nil {
			return err
		}
		t.ListMeta = lm
		writeObject(w, http.StatusOK, out.media, t)
		return nil
	case "PartialObjectMetadataList", "PartialObjectMetadata":
		pl := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"}, ListMeta: lm}
		for _, obj := range res.Items {
			pl.Items = append(pl.Items, *partialMetadata(obj))
		}
		writeObject(w, http.StatusOK, out.media, pl)
		return nil
	}
	list := info.res.NewList()
	list.GetObjectKind().SetGroupVersionKind(info.res.Kind.GroupVersion().WithKind(info.res.Kind.Kind + "List"))
	if err := meta.SetList(list, res.Items); err != nil {
		return apierrors.NewInternalError(err)
	}
	la, _ := meta.ListAccessor(list)
	la.SetResourceVersion(lm.ResourceVersion)
	la.SetContinue(lm.Continue)
	la.SetRemainingItemCount(lm.RemainingItemCount)
	writeObject(w, http.StatusOK, out.media, list)
	return nil
}

// validateListRV applies upstream's rules on resourceVersion parameters.
func validateListRV(o storage.ListOptions) error {
	switch o.ResourceVersionMatch {
	case "", "NotOlderThan", "Exact":
	default:
		return apierrors.NewBadRequest(fmt.Sprintf("resourceVersionMatch: unsupported value %q", o.ResourceVersionMatch))
	}
	if o.ResourceVersion != "" && o.ResourceVersion != "0" {
		if _, err := strconv.ParseUint(o.ResourceVersion, 10, 64); err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", o.ResourceVersion))
		}
	}
	if o.ResourceVersionMatch != "" && o.ResourceVersion == "" {
		return apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if o.ResourceVersionMatch == "Exact" && o.ResourceVersion == "0" {
		return apierrors.NewBadRequest("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")
	}
	if o.Continue != "" && o.ResourceVersionMatch != "" {
		return apierrors.NewBadRequest("resourceVersionMatch is forbidden when continue is provided")
	}
	return nil
}

func notAcceptable() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotAcceptable, Reason: metav1.StatusReasonNotAcceptable,
		Message: "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io",
	}}
}

// partialMetadata strips an object to its metadata.
func partialMetadata(obj runtime.Object) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}}
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if om, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			p.ObjectMeta = *om.DeepCopy()
		}
	}
	return p
}
