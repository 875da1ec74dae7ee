package apiserver

import (
	"net/http"
	"strings"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// requestInfo is what a resource URL names.
type requestInfo struct {
	// verb is upstream's verb: get, list, watch, create, update, patch,
	// delete, deletecollection.
	verb        string
	res         *resource.Resource
	namespace   string
	name        string
	subresource string
}

// parseResourcePath splits the part of a URL after /api/v1 or
// /apis/<group>/<version> into resource, namespace, name and subresource.
//
// The shapes are:
//
//	<res> [/<name> [/<sub>]]                 cluster-scoped, or every namespace
//	namespaces/<ns>/<res> [/<name> [/<sub>]] namespaced
//	namespaces/<name>/<sub>                  a namespace's own subresource
func parseResourcePath(parts []string) (plural, namespace, name, sub string, ok bool) {
	if len(parts) >= 3 && parts[0] == "namespaces" && !(len(parts) == 3 && (parts[2] == "status" || parts[2] == "finalize")) {
		namespace, parts = parts[1], parts[2:]
		if len(parts) > 3 {
			return "", "", "", "", false
		}
	}
	switch len(parts) {
	case 1:
		return parts[0], namespace, "", "", true
	case 2:
		return parts[0], namespace, parts[1], "", true
	case 3:
		return parts[0], namespace, parts[1], parts[2], true
	}
	return "", "", "", "", false
}

// verbFor maps an HTTP method and the URL's shape to upstream's verb.
func verbFor(r *http.Request, hasName bool) string {
	watch := isTrue(r.URL.Query().Get("watch"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			return "watch"
		case hasName:
			return "get"
		default:
			return "list"
		}
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if hasName {
			return "delete"
		}
		return "deletecollection"
	}
	return ""
}

func isTrue(s string) bool {
	return s == "true" || s == "1"
}

// splitPath splits a URL path into its non-empty segments.
func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
