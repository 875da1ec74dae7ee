package openapi

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// URL roots of the two documents.
const (
	v2Path   = "/openapi/v2"
	v3Prefix = "/openapi/v3"
)

// Media types of the v2 document. client-go's discovery client asks only for
// the protobuf encoding and decodes whatever comes back as protobuf, so a
// JSON answer or a 406 would break kubectl's validation. Clients ask with the
// '@' spelling, but the reply must be labelled with the dotted one: '@' is
// not a token character, and client-go fails on a Content-Type that
// mime.ParseMediaType rejects.
const (
	mimeJSON         = "application/json"
	mimeV2ProtoAsked = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
	mimeV2Proto      = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
)

// Cache-Control values, as upstream: a URL that names its content's hash
// never changes, anything else must be revalidated with its ETag.
const (
	cacheImmutable  = "public, immutable, max-age=31536000"
	cacheRevalidate = "no-cache, private"
)

// ServeV2 answers GET /openapi/v2 with the Swagger 2.0 document, as protobuf
// or JSON according to the Accept header.
func (s *Spec) ServeV2(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	docs, err := s.loadV2()
	if err != nil {
		serveError(w, r, err)
		return
	}
	var d document
	var ctype string
	switch negotiate(r.Header.Get("Accept"), mimeJSON, mimeV2ProtoAsked, mimeV2Proto) {
	case mimeV2ProtoAsked, mimeV2Proto:
		d, ctype = docs.proto, mimeV2Proto
	case mimeJSON:
		d, ctype = docs.json, mimeJSON
	default:
		http.Error(w, "openapi v2 is served as "+mimeJSON+" or "+mimeV2Proto, http.StatusNotAcceptable)
		return
	}
	w.Header().Add("Vary", "Accept")
	serveDocument(w, r, d, ctype, cacheRevalidate)
}

// ServeV3 answers GET /openapi/v3 with the index of group-versions and GET
// /openapi/v3/api/v1 or /openapi/v3/apis/<group>/<version> with that
// group-version's OpenAPI 3.0 document. Mount it on both /openapi/v3 and
// /openapi/v3/.
func (s *Spec) ServeV3(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	docs, err := s.loadV3()
	if err != nil {
		serveError(w, r, err)
		return
	}
	if negotiate(r.Header.Get("Accept"), mimeJSON) == "" {
		// The protobuf v3 encoding is defined but no client in kubectl or
		// client-go asks for it.
		http.Error(w, "openapi v3 is served as "+mimeJSON, http.StatusNotAcceptable)
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, v3Prefix), "/")
	if rest == "" {
		serveDocument(w, r, docs.index, mimeJSON, cacheRevalidate)
		return
	}
	d, ok := docs.gv[rest]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hash := r.URL.Query().Get("hash")
	switch hash {
	case "":
		serveDocument(w, r, d, mimeJSON, cacheRevalidate)
	case d.hash:
		serveDocument(w, r, d, mimeJSON, cacheImmutable)
	default:
		// A stale hash (the server was upgraded since the client read the
		// index): send the client to the current document rather than
		// serving different content under an immutable URL.
		w.Header().Set("Cache-Control", cacheRevalidate)
		http.Redirect(w, r, v3Prefix+"/"+rest+"?hash="+d.hash, http.StatusMovedPermanently)
	}
}

func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// serveDocument writes d with its validators and answers a matching
// If-None-Match with 304, so a client's cached copy costs one round trip.
func serveDocument(w http.ResponseWriter, r *http.Request, d document, ctype, cache string) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("ETag", d.etag())
	h.Set("Cache-Control", cache)
	if etagMatches(r.Header.Get("If-None-Match"), d.etag()) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(d.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// A write error means the client went away; there is no one to tell.
	_, _ = w.Write(d.body)
}

func etagMatches(header, etag string) bool {
	for _, candidate := range strings.Split(header, ",") {
		c := strings.TrimSpace(candidate)
		if c == "*" || strings.TrimPrefix(c, "W/") == etag {
			return true
		}
	}
	return false
}

// negotiate returns the first of offers that the Accept header admits, in
// the header's order, or "" if none. A missing header admits the first
// offer. Quality values are not weighed: clients of these endpoints list
// types in preference order.
func negotiate(accept string, offers ...string) string {
	if strings.TrimSpace(accept) == "" {
		return offers[0]
	}
	for _, part := range strings.Split(accept, ",") {
		// Not mime.ParseMediaType: the protobuf types contain '@', which
		// is not a token character, yet clients send them unquoted.
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		if refused(fields[1:]) {
			continue
		}
		for _, o := range offers {
			if mt == o || mt == "*/*" || (strings.HasSuffix(mt, "/*") && strings.HasPrefix(o, strings.TrimSuffix(mt, "*"))) {
				return o
			}
		}
	}
	return ""
}

// serveError reports a generation failure. It is a bug in this package or
// in a served type, never the client's fault, so it is logged here.
func serveError(w http.ResponseWriter, r *http.Request, err error) {
	slog.ErrorContext(r.Context(), "openapi document generation failed", "err", err, "path", r.URL.Path)
	http.Error(w, "openapi document unavailable", http.StatusInternalServerError)
}

// refused reports whether media-type parameters carry q=0, which means "not
// acceptable".
func refused(params []string) bool {
	for _, p := range params {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "q") {
			if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
				return true
			}
		}
	}
	return false
}
