package openapi

import (
	"maps"
	"reflect"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Media types the REST handlers speak; listed so clients know them, and the
// patch types so kubectl picks a patch format the server accepts.
var (
	mimesObject = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"}
	mimesWatch  = []string{"application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch"}
	mimesPatch  = []string{
		"application/json-patch+json",
		"application/merge-patch+json",
		"application/strategic-merge-patch+json",
		"application/apply-patch+yaml",
	}
)

// Go types of the meta/v1 objects that operations take or return besides the
// kinds themselves; every document defines them so references resolve.
var (
	typeStatus        = reflect.TypeFor[metav1.Status]()
	typeDeleteOptions = reflect.TypeFor[metav1.DeleteOptions]()
	typeWatchEvent    = reflect.TypeFor[metav1.WatchEvent]()
	typePatch         = reflect.TypeFor[metav1.Patch]()
	typeTable         = reflect.TypeFor[metav1.Table]()
	metaTypes         = []reflect.Type{typeStatus, typeDeleteOptions, typeWatchEvent, typePatch, typeTable}
)

// param is a path or query parameter in dialect-neutral form.
type param struct {
	name, in, typ, description string
	required                   bool
}

// Query parameters, described for humans reading the documents; the
// semantics are the REST handlers'.
var (
	paramPretty         = param{name: "pretty", in: "query", typ: "string", description: "If 'true', then the output is pretty printed."}
	paramDryRun         = param{name: "dryRun", in: "query", typ: "string", description: "When present, indicates that modifications should not be persisted. Valid value: All."}
	paramFieldManager   = param{name: "fieldManager", in: "query", typ: "string", description: "Name of the actor making the change, recorded in managedFields."}
	paramFieldValidate  = param{name: "fieldValidation", in: "query", typ: "string", description: "How to treat unknown or duplicate fields in the request: Ignore, Warn or Strict."}
	paramForce          = param{name: "force", in: "query", typ: "boolean", description: "Force an apply request, taking ownership of conflicting fields. Only for apply patches."}
	paramGracePeriod    = param{name: "gracePeriodSeconds", in: "query", typ: "integer", description: "Seconds before the object should be deleted; zero means immediately."}
	paramPropagation    = param{name: "propagationPolicy", in: "query", typ: "string", description: "Whether and how dependents are garbage collected: Orphan, Background or Foreground."}
	paramOrphan         = param{name: "orphanDependents", in: "query", typ: "boolean", description: "Deprecated: use propagationPolicy."}
	paramLabelSelector  = param{name: "labelSelector", in: "query", typ: "string", description: "Restrict the returned objects to those whose labels match."}
	paramFieldSelector  = param{name: "fieldSelector", in: "query", typ: "string", description: "Restrict the returned objects to those whose fields match."}
	paramLimit          = param{name: "limit", in: "query", typ: "integer", description: "Maximum number of objects to return; continue with the returned continue token."}
	paramContinue       = param{name: "continue", in: "query", typ: "string", description: "Token from a previous limited list, to fetch the next chunk."}
	paramRV             = param{name: "resourceVersion", in: "query", typ: "string", description: "Which resource version the list or watch starts from."}
	paramRVMatch        = param{name: "resourceVersionMatch", in: "query", typ: "string", description: "How resourceVersion applies to a list: Exact or NotOlderThan."}
	paramTimeout        = param{name: "timeoutSeconds", in: "query", typ: "integer", description: "Timeout for the list or watch call."}
	paramWatch          = param{name: "watch", in: "query", typ: "boolean", description: "Watch for changes instead of listing, as a stream of WatchEvents."}
	paramBookmarks      = param{name: "allowWatchBookmarks", in: "query", typ: "boolean", description: "Ask for BOOKMARK watch events."}
	paramInitialEvents  = param{name: "sendInitialEvents", in: "query", typ: "boolean", description: "Start a watch with synthetic ADDED events for the current state."}
	paramPathName       = param{name: "name", in: "path", typ: "string", description: "name of the object", required: true}
	paramPathNamespace  = param{name: "namespace", in: "path", typ: "string", description: "object name and auth scope, such as for teams and projects", required: true}
	listParams          = []param{paramBookmarks, paramContinue, paramFieldSelector, paramLabelSelector, paramLimit, paramRV, paramRVMatch, paramInitialEvents, paramTimeout, paramWatch}
	deleteParams        = []param{paramDryRun, paramGracePeriod, paramOrphan, paramPropagation}
	collectionDelParams = append(append([]param(nil), deleteParams...), paramContinue, paramFieldSelector, paramLabelSelector, paramLimit, paramRV, paramRVMatch, paramInitialEvents, paramTimeout)
)

// route is one URL path and the operations served on it.
type route struct {
	path   string
	params []param
	ops    []operation
}

// operation is one method on a route, in dialect-neutral form. Types are Go
// types; the renderers turn them into references.
type operation struct {
	method, action, id, description string
	gvk                             schema.GroupVersionKind
	query                           []param
	body                            reflect.Type
	consumes, produces              []string
	// responses maps a status code to the returned type.
	responses map[int]reflect.Type
}

// gvPath is the group-version's URL root without the leading slash, as in
// the v3 index: "api/v1" or "apis/apps/v1".
func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

// opIDSuffix is upstream's operation-id stem for a group-version, e.g.
// CoreV1, AppsV1, RbacAuthorizationV1.
func opIDSuffix(gv schema.GroupVersion) string {
	group := "core"
	if gv.Group != "" {
		group = strings.TrimSuffix(gv.Group, ".k8s.io")
	}
	var b strings.Builder
	for _, part := range strings.FieldsFunc(group, func(r rune) bool { return r == '.' || r == '-' }) {
		b.WriteString(upperFirst(part))
	}
	b.WriteString(upperFirst(gv.Version))
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// routes lists the paths of one kind. Watch is not a separate path: upstream
// deprecated /watch/ URLs, and clients use ?watch=true on the list path.
func routes(k Kind, advertiseFieldValidation bool) []route {
	verbs := k.verbSet()
	objType := reflect.TypeOf(k.Object).Elem()
	var listType reflect.Type
	if k.List != nil {
		listType = reflect.TypeOf(k.List).Elem()
	}
	gv := k.GVK.GroupVersion()
	stem := opIDSuffix(gv)
	scoped := k.GVK.Kind
	base := "/" + gvPath(gv)
	scopeParams := []param{paramPretty}
	if k.Namespaced {
		scoped = "Namespaced" + k.GVK.Kind
		base += "/namespaces/{namespace}"
		scopeParams = []param{paramPathNamespace, paramPretty}
	}
	write := []param{paramDryRun, paramFieldManager}
	if advertiseFieldValidation {
		write = append(write, paramFieldValidate)
	}
	op := func(method, action, id, desc string) operation {
		return operation{
			method: method, action: action, id: id, description: desc,
			gvk: k.GVK, produces: mimesObject,
		}
	}

	collection := route{path: base + "/" + k.Resource, params: scopeParams}
	item := route{path: collection.path + "/{name}", params: append([]param{paramPathName}, scopeParams...)}

	if (verbs[VerbList] || verbs[VerbWatch]) && listType != nil {
		o := op("get", "list", "list"+stem+scoped, "list or watch objects of kind "+k.GVK.Kind)
		o.query = listParams
		o.produces = append(append([]string(nil), mimesObject...), mimesWatch...)
		o.responses = map[int]reflect.Type{200: listType}
		collection.ops = append(collection.ops, o)
	}
	if verbs[VerbCreate] {
		o := op("post", "post", "create"+stem+scoped, "create "+article(k.GVK.Kind))
		o.query = write
		o.body, o.consumes = objType, mimesObject
		o.responses = map[int]reflect.Type{200: objType, 201: objType, 202: objType}
		collection.ops = append(collection.ops, o)
	}
	if verbs[VerbDeleteCollection] {
		o := op("delete", "deletecollection", "deleteCollection"+stem+scoped, "delete collection of "+k.GVK.Kind)
		o.query = collectionDelParams
		o.body, o.consumes = typeDeleteOptions, mimesObject
		o.responses = map[int]reflect.Type{200: typeStatus}
		collection.ops = append(collection.ops, o)
	}
	if verbs[VerbGet] {
		o := op("get", "get", "read"+stem+scoped, "read the specified "+k.GVK.Kind)
		o.responses = map[int]reflect.Type{200: objType}
		item.ops = append(item.ops, o)
	}
	if verbs[VerbUpdate] {
		o := op("put", "put", "replace"+stem+scoped, "replace the specified "+k.GVK.Kind)
		o.query = write
		o.body, o.consumes = objType, mimesObject
		o.responses = map[int]reflect.Type{200: objType, 201: objType}
		item.ops = append(item.ops, o)
	}
	if verbs[VerbPatch] {
		o := op("patch", "patch", "patch"+stem+scoped, "partially update the specified "+k.GVK.Kind)
		o.query = append(append([]param(nil), write...), paramForce)
		o.body, o.consumes = typePatch, mimesPatch
		o.responses = map[int]reflect.Type{200: objType, 201: objType}
		item.ops = append(item.ops, o)
	}
	if verbs[VerbDelete] {
		o := op("delete", "delete", "delete"+stem+scoped, "delete "+article(k.GVK.Kind))
		o.query = deleteParams
		o.body, o.consumes = typeDeleteOptions, mimesObject
		o.responses = map[int]reflect.Type{200: typeStatus, 202: typeStatus}
		item.ops = append(item.ops, o)
	}

	var out []route
	for _, r := range []route{collection, item} {
		if len(r.ops) > 0 {
			out = append(out, r)
		}
	}
	// Namespaced kinds can also be listed across all namespaces.
	if k.Namespaced && verbs[VerbList] && listType != nil {
		o := op("get", "list", "list"+stem+k.GVK.Kind+"ForAllNamespaces", "list or watch objects of kind "+k.GVK.Kind+" in all namespaces")
		o.query = listParams
		o.produces = append(append([]string(nil), mimesObject...), mimesWatch...)
		o.responses = map[int]reflect.Type{200: listType}
		out = append(out, route{path: "/" + gvPath(gv) + "/" + k.Resource, params: []param{paramPretty}, ops: []operation{o}})
	}
	return out
}

func article(kind string) string {
	if kind != "" && strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// defineKinds generates the definitions of the kinds, their lists and the
// meta types, marks kinds with their GVKs, and returns the root definition
// names per group-version path.
func defineKinds(g *generator, kinds []Kind) map[string][]string {
	roots := map[string][]string{}
	var metaNames []string
	for _, t := range metaTypes {
		metaNames = append(metaNames, g.define(t))
	}
	for _, k := range kinds {
		p := gvPath(k.GVK.GroupVersion())
		if _, ok := roots[p]; !ok {
			roots[p] = append([]string(nil), metaNames...)
		}
		name := g.define(reflect.TypeOf(k.Object).Elem())
		addGVK(g.defs[name], k.GVK.Group, k.GVK.Version, k.GVK.Kind)
		roots[p] = append(roots[p], name)
		if k.List != nil {
			listName := g.define(reflect.TypeOf(k.List).Elem())
			addGVK(g.defs[listName], k.GVK.Group, k.GVK.Version, k.GVK.Kind+"List")
			roots[p] = append(roots[p], listName)
		}
	}
	// As upstream, Status is core/v1 only while DeleteOptions and
	// WatchEvent are accepted in every group-version.
	addGVK(g.defs[g.names[typeStatus]], "", "v1", "Status")
	// Sorted, so the documents and their hashes are the same on every
	// server of a cluster.
	for _, p := range slices.Sorted(maps.Keys(roots)) {
		gv := pathGV(p)
		addGVK(g.defs[g.names[typeDeleteOptions]], gv.Group, gv.Version, "DeleteOptions")
		addGVK(g.defs[g.names[typeWatchEvent]], gv.Group, gv.Version, "WatchEvent")
	}
	return roots
}

// pathGV is the inverse of gvPath.
func pathGV(p string) schema.GroupVersion {
	parts := strings.Split(p, "/")
	if parts[0] == "api" {
		return schema.GroupVersion{Version: parts[1]}
	}
	return schema.GroupVersion{Group: parts[1], Version: parts[2]}
}
