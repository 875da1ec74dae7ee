package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// aggregatedMedia is the content type of aggregated discovery documents.
const aggregatedMedia = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

var (
	verbsAll    = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
	verbsStatus = []string{"get", "patch", "update"}
)

// discovery holds the discovery documents, rendered once: the set of kinds
// is fixed for the life of the process.
type discovery struct {
	api, apis                   []byte // legacy /api and /apis
	aggregatedAPI, aggregatedAP []byte // aggregated /api and /apis
	groups                      map[string][]byte
	resources                   map[schema.GroupVersion][]byte
}

func newDiscovery(kinds []*resource.Resource, address string) *discovery {
	d := &discovery{groups: map[string][]byte{}, resources: map[schema.GroupVersion][]byte{}}
	var order []schema.GroupVersion
	lists := map[schema.GroupVersion]*metav1.APIResourceList{}
	aggregated := map[schema.GroupVersion]*apidiscoveryv2.APIVersionDiscovery{}
	for _, r := range kinds {
		gv := r.Kind.GroupVersion()
		if lists[gv] == nil {
			order = append(order, gv)
			lists[gv] = &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
			aggregated[gv] = &apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		}
		list, agg := lists[gv], aggregated[gv]
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.Plural, SingularName: r.SingularName(), Namespaced: r.Namespaced, Kind: r.Kind.Kind,
			Verbs: verbsAll, ShortNames: r.ShortNames, Categories: r.Categories, StorageVersionHash: storageVersionHash(r.Kind),
		})
		scope := apidiscoveryv2.ScopeCluster
		if r.Namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		ad := apidiscoveryv2.APIResourceDiscovery{
			Resource: r.Plural, SingularResource: r.SingularName(), Scope: scope, Verbs: verbsAll,
			ShortNames: r.ShortNames, Categories: r.Categories,
			ResponseKind: &metav1.GroupVersionKind{Group: r.Kind.Group, Version: r.Kind.Version, Kind: r.Kind.Kind},
		}
		subs := r.Subresources()
		if r.Kind.Kind == "Namespace" {
			subs = append(subs, "finalize")
		}
		for _, sub := range subs {
			kind, verbs := subresourceKind(r, sub)
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: r.Plural + "/" + sub, Namespaced: r.Namespaced, Group: kind.Group, Version: kind.Version, Kind: kind.Kind, Verbs: verbs,
			})
			ad.Subresources = append(ad.Subresources, apidiscoveryv2.APISubresourceDiscovery{
				Subresource: sub, Verbs: verbs,
				ResponseKind: &metav1.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind},
			})
		}
		agg.Resources = append(agg.Resources, ad)
	}

	versions := &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: address}}}
	groupList := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
	aggAPI := &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	aggAPIs := &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	groupIndex := map[string]int{}
	for _, gv := range order {
		d.resources[gv] = mustJSON(lists[gv])
		entry := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group}, Versions: []apidiscoveryv2.APIVersionDiscovery{*aggregated[gv]}}
		if gv.Group == "" {
			aggAPI.Items = append(aggAPI.Items, entry)
			continue
		}
		vfd := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		if i, ok := groupIndex[gv.Group]; ok {
			groupList.Groups[i].Versions = append(groupList.Groups[i].Versions, vfd)
			aggAPIs.Items[i].Versions = append(aggAPIs.Items[i].Versions, *aggregated[gv])
			continue
		}
		groupIndex[gv.Group] = len(groupList.Groups)
		groupList.Groups = append(groupList.Groups, metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{vfd}, PreferredVersion: vfd})
		aggAPIs.Items = append(aggAPIs.Items, entry)
	}
	for _, g := range groupList.Groups {
		g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
		d.groups[g.Name] = mustJSON(g)
	}
	d.api, d.apis = mustJSON(versions), mustJSON(groupList)
	d.aggregatedAPI, d.aggregatedAP = mustJSON(aggAPI), mustJSON(aggAPIs)
	return d
}

// subresourceKind returns the kind a subresource speaks and its verbs.
func subresourceKind(r *resource.Resource, sub string) (schema.GroupVersionKind, []string) {
	if c := r.Connect[sub]; c != nil {
		return c.Kind, c.Verbs()
	}
	switch sub {
	case "scale":
		return schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, verbsStatus
	case "binding":
		return schema.GroupVersionKind{Version: "v1", Kind: "Binding"}, []string{"create"}
	case "finalize":
		return r.Kind, []string{"update"}
	}
	return r.Kind, verbsStatus
}

// storageVersionHash is an opaque digest of the stored kind, as upstream
// publishes for clients that detect storage migrations.
func storageVersionHash(gvk schema.GroupVersionKind) string {
	sum := sha256.Sum256([]byte(gvk.String()))
	return hex.EncodeToString(sum[:])[:11]
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only static discovery types are marshalled here
	}
	return b
}

// wantsAggregated reports whether the client asked for aggregated discovery.
func wantsAggregated(r *http.Request) bool {
	for _, m := range parseAccept(r.Header.Get("Accept")) {
		if m.as == "APIGroupDiscoveryList" && m.group == "apidiscovery.k8s.io" && (m.ver == "v2" || m.ver == "v2beta1") {
			return true
		}
		if m.as == "" && (m.typ == "application/json" || m.typ == "*/*") {
			return false
		}
	}
	return false
}

func (d *discovery) serveAPI(w http.ResponseWriter, r *http.Request) {
	d.serveRoot(w, r, d.api, d.aggregatedAPI)
}

func (d *discovery) serveAPIs(w http.ResponseWriter, r *http.Request) {
	d.serveRoot(w, r, d.apis, d.aggregatedAP)
}

func (d *discovery) serveRoot(w http.ResponseWriter, r *http.Request, legacy, aggregated []byte) {
	w.Header().Set("Vary", "Accept")
	if wantsAggregated(r) {
		sum := sha256.Sum256(aggregated)
		etag := `"` + strings.ToUpper(hex.EncodeToString(sum[:16])) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeRaw(w, aggregatedMedia, aggregated)
		return
	}
	writeRaw(w, mediaJSON, legacy)
}

func (d *discovery) serveGroup(w http.ResponseWriter, r *http.Request, group string) {
	b, ok := d.groups[group]
	if !ok {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	writeRaw(w, mediaJSON, b)
}

func (d *discovery) serveResources(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	writeRaw(w, mediaJSON, d.resources[gv])
}

func writeRaw(w http.ResponseWriter, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
