package openapi

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/openapi/cached"
	"k8s.io/kubectl/pkg/util/openapi"
	"k8s.io/kubectl/pkg/validation"
)

// resourcesGetter adapts kubectl's caching parser to the interface its
// schema validation asks for, as kubectl's factory does.
type resourcesGetter struct{ parser *openapi.CachedOpenAPIParser }

func (g resourcesGetter) OpenAPISchema() (openapi.Resources, error) { return g.parser.Parse() }

const validPod = `
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: nginx
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 80}]
    resources:
      limits: {cpu: 500m, memory: 128Mi}
      requests: {cpu: 1}
    livenessProbe:
      httpGet: {path: /, port: http}
      initialDelaySeconds: 3
`

func TestKubectlClientSideValidation(t *testing.T) {
	t.Parallel()
	_, cfg := startServer(t, Options{})
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("discovery client: %v", err)
	}
	// The same pieces kubectl's factory assembles for --validate=strict.
	v := validation.NewSchemaValidation(resourcesGetter{openapi.NewOpenAPIParser(openapi.NewOpenAPIGetter(dc))})
	tests := []struct {
		name    string
		doc     string
		wantErr string // "" means the document must pass
	}{
		{name: "valid pod", doc: validPod},
		{
			name:    "unknown container field",
			doc:     strings.Replace(validPod, "imagePullPolicy:", "imagePullPolicyy:", 1),
			wantErr: `unknown field "imagePullPolicyy"`,
		},
		{
			name:    "missing required container name",
			doc:     strings.Replace(validPod, "  - name: web\n", "  - tty: true\n", 1),
			wantErr: `missing required field "name"`,
		},
		{
			name:    "wrong type",
			doc:     strings.Replace(validPod, "initialDelaySeconds: 3", "initialDelaySeconds: soon", 1),
			wantErr: "initialDelaySeconds",
		},
		{
			name: "valid deployment",
			doc: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
`,
		},
		{
			name: "deployment without template",
			doc: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {selector: {matchLabels: {app: web}}}
`,
			wantErr: `missing required field "template"`,
		},
		{
			name: "service target port as number and name",
			doc: `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80, targetPort: 8080}, {port: 81, targetPort: http}]
`,
		},
		{
			name: "endpointslice without ports, optional upstream",
			doc: `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1}
addressType: IPv4
endpoints: []
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.ValidateBytes([]byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("valid document rejected: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("invalid document accepted, want error with %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestFieldValidationAdvertising pins the choice documented on the package:
// kubectl validates client-side exactly when the server does not advertise
// the fieldValidation parameter.
func TestFieldValidationAdvertising(t *testing.T) {
	t.Parallel()
	pod := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	lease := schema.GroupVersionKind{Group: "coordination.k8s.io", Version: "v1", Kind: "Lease"}
	tests := []struct {
		name          string
		advertise     bool
		gvk           schema.GroupVersionKind
		wantSupported bool
	}{
		{"default: not advertised, pod", false, pod, false},
		{"default: not advertised, lease", false, lease, false},
		{"advertised, pod", true, pod, true},
		{"advertised, lease", true, lease, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, cfg := startServer(t, Options{AdvertiseFieldValidation: tt.advertise})
			dc, err := discovery.NewDiscoveryClientForConfig(cfg)
			if err != nil {
				t.Fatalf("discovery client: %v", err)
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatalf("dynamic client: %v", err)
			}
			verifiers := map[string]resource.Verifier{
				"v3": resource.NewQueryParamVerifierV3(dyn, cached.NewClient(dc.OpenAPIV3()), resource.QueryParamFieldValidation),
				"v2": resource.NewQueryParamVerifier(dyn, openapi.NewOpenAPIGetter(dc), resource.QueryParamFieldValidation),
			}
			for name, v := range verifiers {
				err := v.HasSupport(tt.gvk)
				switch {
				case tt.wantSupported && err != nil:
					t.Errorf("%s verifier: %v, want support", name, err)
				case !tt.wantSupported && !resource.IsParamUnsupportedError(err):
					// Any other error would make kubectl fall back or fail
					// instead of validating client-side.
					t.Errorf("%s verifier: %v, want a param-unsupported error", name, err)
				}
			}
		})
	}
}
