package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi/cached"
	"k8s.io/client-go/rest"
	explainv2 "k8s.io/kubectl/pkg/explain/v2"
)

// startServer serves a Spec of testKinds the way the API server mounts it
// and returns a client config for it.
func startServer(t *testing.T, opts Options) (*httptest.Server, *rest.Config) {
	t.Helper()
	s, err := New(testKinds(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(v2Path, s.ServeV2)
	mux.HandleFunc(v3Prefix, s.ServeV3)
	mux.HandleFunc(v3Prefix+"/", s.ServeV3)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &rest.Config{Host: srv.URL}
}

func TestKubectlExplain(t *testing.T) {
	t.Parallel()
	_, cfg := startServer(t, Options{})
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("discovery client: %v", err)
	}
	client := cached.NewClient(dc.OpenAPIV3())
	tests := []struct {
		name      string
		gvr       schema.GroupVersionResource
		fields    []string
		recursive bool
		want      []string
	}{
		{
			name:   "pod.spec.containers.livenessProbe",
			gvr:    schema.GroupVersionResource{Version: "v1", Resource: "pods"},
			fields: []string{"spec", "containers", "livenessProbe"},
			want: []string{"KIND:       Pod", "VERSION:    v1", "FIELD: livenessProbe <Probe>",
				"Periodic probe of container liveness", "httpGet\t<HTTPGetAction>", "initialDelaySeconds\t<integer>"},
		},
		{
			name:   "pod",
			gvr:    schema.GroupVersionResource{Version: "v1", Resource: "pods"},
			fields: nil,
			want:   []string{"Pod is a collection of containers", "metadata\t<ObjectMeta>", "spec\t<PodSpec>"},
		},
		{
			name:      "deployment.spec --recursive",
			gvr:       schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			fields:    []string{"spec"},
			recursive: true,
			want: []string{"GROUP:      apps", "KIND:       Deployment", "replicas\t<integer>",
				"template\t<PodTemplateSpec> -required-", "livenessProbe\t<Probe>"},
		},
		{
			name:   "cluster-scoped kind in a named group",
			gvr:    schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1", Resource: "priorityclasses"},
			fields: []string{"value"},
			want:   []string{"GROUP:      scheduling.k8s.io", "FIELD: value <integer>"},
		},
		{
			name:   "int-or-string field",
			gvr:    schema.GroupVersionResource{Version: "v1", Resource: "services"},
			fields: []string{"spec", "ports", "targetPort"},
			want:   []string{"FIELD: targetPort", "IntOrString"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := explainv2.PrintModelDescription(tt.fields, &out, client, tt.gvr, tt.recursive, 0, "plaintext"); err != nil {
				t.Fatalf("explain: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("explain output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// get fetches path from srv with the given request headers.
func get(t *testing.T, srv *httptest.Server, method, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// Redirects are part of what is under test.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp, body
}

func TestServeV3(t *testing.T) {
	t.Parallel()
	srv, _ := startServer(t, Options{})
	_, body := get(t, srv, http.MethodGet, "/openapi/v3", nil)
	var index v3Index
	if err := json.Unmarshal(body, &index); err != nil {
		t.Fatalf("index: %v: %s", err, body)
	}
	core, ok := index.Paths["api/v1"]
	if !ok || !strings.HasPrefix(core.ServerRelativeURL, "/openapi/v3/api/v1?hash=") {
		t.Fatalf("index lacks api/v1 with a hash: %s", body)
	}
	if _, ok := index.Paths["apis/coordination.k8s.io/v1"]; !ok {
		t.Fatalf("index lacks coordination.k8s.io/v1: %s", body)
	}
	hash := strings.TrimPrefix(core.ServerRelativeURL, "/openapi/v3/api/v1?hash=")
	resp, _ := get(t, srv, http.MethodGet, core.ServerRelativeURL, nil)
	etag := resp.Header.Get("ETag")

	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		wantCode     int
		wantHeader   map[string]string
	}{
		{name: "index revalidates", method: "GET", path: "/openapi/v3/", wantCode: 200,
			wantHeader: map[string]string{"Cache-Control": cacheRevalidate, "Content-Type": "application/json"}},
		{name: "hashed URL is immutable", method: "GET", path: core.ServerRelativeURL, wantCode: 200,
			wantHeader: map[string]string{"Cache-Control": cacheImmutable, "ETag": `"` + hash + `"`}},
		{name: "unhashed URL revalidates", method: "GET", path: "/openapi/v3/api/v1", wantCode: 200,
			wantHeader: map[string]string{"Cache-Control": cacheRevalidate}},
		{name: "stale hash redirects to current", method: "GET", path: "/openapi/v3/api/v1?hash=0BSOLETE", wantCode: 301,
			wantHeader: map[string]string{"Location": core.ServerRelativeURL}},
		{name: "matching ETag is not modified", method: "GET", path: core.ServerRelativeURL,
			header: map[string]string{"If-None-Match": etag}, wantCode: 304},
		{name: "unknown group-version", method: "GET", path: "/openapi/v3/apis/nope/v1", wantCode: 404},
		{name: "protobuf only is not acceptable", method: "GET", path: "/openapi/v3/api/v1",
			header: map[string]string{"Accept": "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"}, wantCode: 406},
		{name: "writes are refused", method: "POST", path: "/openapi/v3/api/v1", wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, _ := get(t, srv, tt.method, tt.path, tt.header)
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestServeV2(t *testing.T) {
	t.Parallel()
	srv, _ := startServer(t, Options{})
	tests := []struct {
		name      string
		accept    string
		wantCode  int
		wantCType string
	}{
		{"what client-go asks for", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", 200, mimeV2Proto},
		{"dotted protobuf", mimeV2Proto, 200, mimeV2Proto},
		{"json", "application/json", 200, "application/json"},
		{"no preference", "", 200, "application/json"},
		{"first acceptable wins", "text/html, application/com.github.proto-openapi.spec.v2@v1.0+protobuf, application/json", 200, mimeV2Proto},
		{"q=0 refuses", "application/json;q=0", 406, ""},
		{"unsupported", "text/html", 406, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, srv, http.MethodGet, "/openapi/v2", map[string]string{"Accept": tt.accept})
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantCode != 200 {
				return
			}
			if got := resp.Header.Get("Content-Type"); got != tt.wantCType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantCType)
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if tt.wantCType == mimeV2Proto {
				var doc openapi_v2.Document
				if err := proto.Unmarshal(body, &doc); err != nil {
					t.Fatalf("protobuf: %v", err)
				}
				if doc.GetSwagger() != "2.0" || len(doc.GetDefinitions().GetAdditionalProperties()) == 0 {
					t.Fatalf("protobuf document empty: swagger %q", doc.GetSwagger())
				}
				return
			}
			var doc struct {
				Swagger     string         `json:"swagger"`
				Definitions map[string]any `json:"definitions"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatalf("json: %v", err)
			}
			if _, ok := doc.Definitions[nPod]; doc.Swagger != "2.0" || !ok {
				t.Errorf("json document lacks %s", nPod)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	good := testKinds()[0]
	tests := []struct {
		name    string
		mutate  func(k *Kind)
		wantErr bool
	}{
		{"complete kind", func(*Kind) {}, false},
		{"no object", func(k *Kind) { k.Object = nil }, true},
		{"no resource", func(k *Kind) { k.Resource = "" }, true},
		{"no kind", func(k *Kind) { k.GVK.Kind = "" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := good
			tt.mutate(&k)
			_, err := New([]Kind{k}, Options{})
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("New error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidKind) {
				t.Errorf("error %v is not ErrInvalidKind", err)
			}
		})
	}
}

// TestBuildCost checks that start-up pays nothing and the first request
// little, and that every server of a cluster serves identical documents.
func TestBuildCost(t *testing.T) {
	t.Parallel()
	start := time.Now()
	a, err := New(testKinds(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("New took %v; generation must be lazy", took)
	}
	if a.v2 != nil || a.v3 != nil {
		t.Error("New generated documents eagerly")
	}
	b, _ := New(testKinds(), Options{})
	for _, s := range []*Spec{a, b} {
		if _, err := s.loadV2(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.loadV3(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("first request builds: v2 %v (%d bytes JSON, %d protobuf), v3 %v (%d group-versions)",
		a.v2.took, len(a.v2.json.body), len(a.v2.proto.body), a.v3.took, len(a.v3.gv))
	// Generous bounds: a regression to seconds would stall the first
	// kubectl call against a fresh server.
	if a.v2.took > 3*time.Second || a.v3.took > 3*time.Second {
		t.Errorf("build too slow: v2 %v v3 %v", a.v2.took, a.v3.took)
	}
	if a.v2.json.hash != b.v2.json.hash || a.v3.index.hash != b.v3.index.hash {
		t.Error("two builds of the same kinds differ")
	}
}
