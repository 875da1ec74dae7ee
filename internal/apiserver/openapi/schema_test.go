package openapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Upstream definition names the tests refer to.
const (
	nPod          = "io.k8s.api.core.v1.Pod"
	nPodSpec      = "io.k8s.api.core.v1.PodSpec"
	nContainer    = "io.k8s.api.core.v1.Container"
	nProbe        = "io.k8s.api.core.v1.Probe"
	nIntOrString  = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	nQuantity     = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	nTime         = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
	nMicroTime    = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
	nObjectMeta   = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
	nRawExtension = "io.k8s.apimachinery.pkg.runtime.RawExtension"
)

type fixtureInner struct {
	Inner string `json:"inner"`
}

// fixture exercises every json tag form the generator must understand.
type fixture struct {
	fixtureInner `json:",inline"`
	Skipped      string `json:"-"`
	Ptr          *int64 `json:"ptr,omitempty"`
	Untagged     bool   // no json tag: encoding/json uses the Go name
	//lint:ignore U1000 present to check that unexported fields are skipped
	private int               // unexported: never on the wire
	Self    *fixture          `json:"self,omitempty"`
	Any     any               `json:"any"`
	Labels  map[string]string `json:"labels,omitempty"`
	Raw     []byte            `json:"raw,omitempty"`
	Zero    float64           `json:"zero,omitzero"`
}

func TestDefinitionName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  reflect.Type
		want string
	}{
		{"core kind", reflect.TypeFor[corev1.Pod](), nPod},
		{"meta type", reflect.TypeFor[metav1.ObjectMeta](), nObjectMeta},
		{"int or string", reflect.TypeFor[intstr.IntOrString](), nIntOrString},
		{"quantity", reflect.TypeFor[resource.Quantity](), nQuantity},
		{"type without model name derives from package path", reflect.TypeFor[fixture](),
			"com.github.skiffhq.skiff.internal.apiserver.openapi.fixture"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := definitionName(tt.typ); got != tt.want {
				t.Errorf("definitionName(%v) = %q, want %q", tt.typ, got, tt.want)
			}
		})
	}
}

func TestStructFields(t *testing.T) {
	t.Parallel()
	g := newGenerator(false)
	name := g.define(reflect.TypeFor[fixture]())
	def := g.defs[name]
	tests := []struct {
		name  string
		field string
		want  bool // whether the property exists
		check func(s spec.Schema) string
	}{
		{name: "inline struct is flattened", field: "inner", want: true},
		{name: "embedded struct name is not a property", field: "fixtureInner"},
		{name: "dash tag is skipped", field: "Skipped"},
		{name: "dash tag is skipped by json name too", field: "-"},
		{name: "unexported field is skipped", field: "private"},
		{name: "untagged field uses Go name", field: "Untagged", want: true},
		{name: "pointer unwraps to int64", field: "ptr", want: true, check: func(s spec.Schema) string {
			return expect(s.Type.Contains("integer") && s.Format == "int64", "type %v format %q", s.Type, s.Format)
		}},
		{name: "self reference is a ref, not recursion", field: "self", want: true, check: func(s spec.Schema) string {
			return expect(s.Ref.String() == refPrefixV2+name, "ref %q", s.Ref.String())
		}},
		{name: "interface is any value", field: "any", want: true, check: func(s spec.Schema) string {
			return expect(len(s.Type) == 0, "type %v", s.Type)
		}},
		{name: "map has additionalProperties", field: "labels", want: true, check: func(s spec.Schema) string {
			ok := s.Type.Contains("object") && s.AdditionalProperties != nil && s.AdditionalProperties.Schema.Type.Contains("string")
			return expect(ok, "schema %s", compact(s))
		}},
		{name: "bytes are base64 strings", field: "raw", want: true, check: func(s spec.Schema) string {
			return expect(s.Type.Contains("string") && s.Format == "byte", "type %v format %q", s.Type, s.Format)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, ok := def.Properties[tt.field]
			if ok != tt.want {
				t.Fatalf("property %q present = %v, want %v (have %v)", tt.field, ok, tt.want, slices.Sorted(maps.Keys(def.Properties)))
			}
			if tt.check != nil {
				if msg := tt.check(s); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
	t.Run("required are the fields without omitempty", func(t *testing.T) {
		t.Parallel()
		want := []string{"Untagged", "any", "inner"}
		if !slices.Equal(def.Required, want) {
			t.Errorf("required = %v, want %v", def.Required, want)
		}
	})
}

func TestGeneratedKindSchemas(t *testing.T) {
	t.Parallel()
	for _, dialect := range []struct {
		name string
		v3   bool
	}{{"v2", false}, {"v3", true}} {
		t.Run(dialect.name, func(t *testing.T) {
			t.Parallel()
			g := newGenerator(dialect.v3)
			defineKinds(g, testKinds())
			d := defs{g: g}
			tests := []struct {
				name  string
				check func() string
			}{
				{"Pod carries its group-version-kind", func() string {
					return expect(hasGVK(d.def(nPod), "", "v1", "Pod"), "extensions %v", d.def(nPod).Extensions)
				}},
				{"PodList carries its group-version-kind", func() string {
					n := "io.k8s.api.core.v1.PodList"
					return expect(hasGVK(d.def(n), "", "v1", "PodList"), "extensions %v", d.def(n).Extensions)
				}},
				{"Deployment carries its group-version-kind", func() string {
					n := "io.k8s.api.apps.v1.Deployment"
					return expect(hasGVK(d.def(n), "apps", "v1", "Deployment"), "extensions %v", d.def(n).Extensions)
				}},
				{"TypeMeta is inlined into Pod", func() string {
					p := d.def(nPod).Properties
					_, api := p["apiVersion"]
					_, kind := p["kind"]
					_, meta := p["TypeMeta"]
					return expect(api && kind && !meta, "properties %v", slices.Sorted(maps.Keys(p)))
				}},
				{"metadata refers to ObjectMeta", func() string {
					return expect(d.refOf(d.prop(nPod, "metadata")) == nObjectMeta, "ref %q", d.refOf(d.prop(nPod, "metadata")))
				}},
				{"spec.containers items refer to Container", func() string {
					c := d.prop(nPodSpec, "containers")
					if !c.Type.Contains("array") || c.Items == nil || c.Items.Schema == nil {
						return "containers is not an array"
					}
					return expect(d.refOf(*c.Items.Schema) == nContainer, "items ref %q", d.refOf(*c.Items.Schema))
				}},
				{"containers carry patch strategy and merge key", func() string {
					e := d.prop(nPodSpec, "containers").Extensions
					return expect(e[extPatchStrategy] == "merge" && e[extPatchMergeKey] == "name", "extensions %v", e)
				}},
				{"livenessProbe is described and refers to Probe", func() string {
					p := d.prop(nContainer, "livenessProbe")
					ok := strings.Contains(p.Description, "Periodic probe of container liveness") && d.refOf(p) == nProbe
					return expect(ok, "description %q ref %q", p.Description, d.refOf(p))
				}},
				{"ProbeHandler is inlined into Probe", func() string {
					_, ok := d.def(nProbe).Properties["httpGet"]
					return expect(ok, "properties %v", slices.Sorted(maps.Keys(d.def(nProbe).Properties)))
				}},
				{"IntOrString is an int-or-string string (v2) or integer|string (v3)", func() string {
					s := d.def(nIntOrString)
					want := []string{"string"}
					if dialect.v3 {
						want = []string{"integer", "string"}
					}
					ok := slices.Equal(leafTypes(s), want) && s.Format == "int-or-string" &&
						s.Extensions[extIntOrString] == true && len(s.Properties) == 0
					return expect(ok, "schema %s", compact(s))
				}},
				{"targetPort refers to IntOrString", func() string {
					r := d.refOf(d.prop("io.k8s.api.core.v1.ServicePort", "targetPort"))
					return expect(r == nIntOrString, "ref %q", r)
				}},
				{"Quantity is a string (v2) or string|number (v3)", func() string {
					s := d.def(nQuantity)
					want := []string{"string"}
					if dialect.v3 {
						want = []string{"string", "number"}
					}
					ok := slices.Equal(leafTypes(s), want) && s.Extensions[extIntOrString] == nil && len(s.Properties) == 0
					return expect(ok, "schema %s", compact(s))
				}},
				{"resource limits map to Quantity", func() string {
					l := d.prop("io.k8s.api.core.v1.ResourceRequirements", "limits")
					if l.AdditionalProperties == nil || l.AdditionalProperties.Schema == nil {
						return "limits has no additionalProperties"
					}
					return expect(d.refOf(*l.AdditionalProperties.Schema) == nQuantity, "values ref %q", d.refOf(*l.AdditionalProperties.Schema))
				}},
				{"Time is a date-time string", func() string {
					s := d.def(nTime)
					ok := s.Type.Contains("string") && s.Format == "date-time" &&
						d.refOf(d.prop(nObjectMeta, "creationTimestamp")) == nTime
					return expect(ok, "schema %s", compact(s))
				}},
				{"MicroTime is a date-time string", func() string {
					s := d.def(nMicroTime)
					ok := s.Type.Contains("string") && s.Format == "date-time" &&
						d.refOf(d.prop("io.k8s.api.events.v1.Event", "eventTime")) == nMicroTime
					return expect(ok, "schema %s", compact(s))
				}},
				{"RawExtension is an object", func() string {
					s := d.def(nRawExtension)
					ok := s.Type.Contains("object") && len(s.Properties) == 0 &&
						d.refOf(d.prop("io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent", "object")) == nRawExtension
					return expect(ok, "schema %s", compact(s))
				}},
				{"binaryData is a map of byte strings", func() string {
					b := d.prop("io.k8s.api.core.v1.ConfigMap", "binaryData")
					ok := b.AdditionalProperties != nil && b.AdditionalProperties.Schema.Format == "byte"
					return expect(ok, "schema %s", compact(b))
				}},
				{"int32 and int64 formats", func() string {
					p := d.prop("io.k8s.api.core.v1.ContainerPort", "containerPort")
					a := d.prop(nPodSpec, "activeDeadlineSeconds")
					return expect(p.Format == "int32" && a.Format == "int64", "formats %q %q", p.Format, a.Format)
				}},
				{"Container requires only name", func() string {
					r := d.def(nContainer).Required
					return expect(slices.Equal(r, []string{"name"}), "required %v", r)
				}},
				{"Pod requires nothing", func() string {
					return expect(len(d.def(nPod).Required) == 0, "required %v", d.def(nPod).Required)
				}},
				{"+optional fields without omitempty are not required", func() string {
					r := d.def("io.k8s.api.discovery.v1.EndpointSlice").Required
					return expect(slices.Equal(r, []string{"addressType"}), "required %v", r)
				}},
				{"meta types are defined", func() string {
					for _, n := range []string{"Status", "DeleteOptions", "WatchEvent", "Patch", "Table"} {
						if _, ok := g.defs["io.k8s.apimachinery.pkg.apis.meta.v1."+n]; !ok {
							return n + " missing"
						}
					}
					return ""
				}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if msg := tt.check(); msg != "" {
						t.Error(msg)
					}
				})
			}
		})
	}
}

func TestOptionalFieldsExist(t *testing.T) {
	t.Parallel()
	g := newGenerator(false)
	defineKinds(g, testKinds())
	for def, fields := range optionalFields {
		s, ok := g.defs[def]
		if !ok {
			continue // a group these tests do not serve
		}
		for _, f := range fields {
			t.Run(def+"."+f, func(t *testing.T) {
				t.Parallel()
				if _, ok := s.Properties[f]; !ok {
					t.Errorf("%s has no field %q: stale optionalFields entry", def, f)
				}
			})
		}
	}
}

// defs wraps a generator's definitions with lookups that fail loudly.
type defs struct{ g *generator }

func (d defs) def(name string) *spec.Schema {
	s, ok := d.g.defs[name]
	if !ok {
		return &spec.Schema{}
	}
	return s
}

func (d defs) prop(def, field string) spec.Schema {
	return d.def(def).Properties[field]
}

// refOf returns the definition name s refers to, directly (v2) or through a
// one-element allOf (v3).
func (d defs) refOf(s spec.Schema) string {
	ref := s.Ref.String()
	if ref == "" && len(s.AllOf) == 1 {
		ref = s.AllOf[0].Ref.String()
	}
	return strings.TrimPrefix(ref, d.g.refPrefix())
}

func hasGVK(s *spec.Schema, group, version, kind string) bool {
	list, _ := s.Extensions[extGVK].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		if m["group"] == group && m["version"] == version && m["kind"] == kind {
			return true
		}
	}
	return false
}

// leafTypes is a schema's JSON types, whether given as type or as oneOf.
func leafTypes(s *spec.Schema) []string {
	types := []string(s.Type)
	for _, o := range s.OneOf {
		types = append(types, o.Type...)
	}
	return types
}

func compact(s any) string {
	b, err := json.Marshal(s)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func expect(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return "unexpected " + fmt.Sprintf(format, args...)
}
