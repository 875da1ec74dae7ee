package openapi

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Reference prefixes of the two OpenAPI dialects: v2 keeps schemas under
// "definitions", v3 under "components/schemas".
const (
	refPrefixV2 = "#/definitions/"
	refPrefixV3 = "#/components/schemas/"
)

// Vendor extensions understood by kubectl and client-go.
const (
	extGVK            = "x-kubernetes-group-version-kind"
	extPatchStrategy  = "x-kubernetes-patch-strategy"
	extPatchMergeKey  = "x-kubernetes-patch-merge-key"
	extIntOrString    = "x-kubernetes-int-or-string"
	extAction         = "x-kubernetes-action"
	formatIntOrString = "int-or-string"
)

// swaggerDocer is implemented by every k8s.io/api and apimachinery type: the
// generated map holds the Go doc comments keyed by JSON field name, with ""
// for the type itself.
type swaggerDocer interface {
	SwaggerDoc() map[string]string
}

// modelNamer is implemented by types that carry their upstream OpenAPI
// definition name (generated into k8s.io/api since v0.34); when present it is
// the authority, so our names never drift from upstream's.
type modelNamer interface {
	OpenAPIModelName() string
}

// schemaTyper and schemaFormatter are how apimachinery's custom-marshalled
// leaf types (Time, MicroTime, Duration, Quantity, IntOrString) say what they
// look like on the wire; reflecting over their Go fields would be wrong.
type schemaTyper interface {
	OpenAPISchemaType() []string
}

type schemaFormatter interface {
	OpenAPISchemaFormat() string
}

// oneOfTyper names the alternatives of a leaf type that is one of several
// JSON types (IntOrString, Quantity), for OpenAPI 3.
type oneOfTyper interface {
	OpenAPIV3OneOfTypes() []string
}

var (
	swaggerDocerType = reflect.TypeFor[swaggerDocer]()
	modelNamerType   = reflect.TypeFor[modelNamer]()
	schemaTyperType  = reflect.TypeFor[schemaTyper]()
	schemaFmtType    = reflect.TypeFor[schemaFormatter]()
	oneOfTyperType   = reflect.TypeFor[oneOfTyper]()
	marshalerType    = reflect.TypeFor[json.Marshaler]()
	byteSliceType    = reflect.TypeFor[[]byte]()
)

// generator turns Go types into named OpenAPI definitions. One generator
// produces one dialect (v2 or v3); the two differ only in how a described
// reference is written, so the walk is shared.
type generator struct {
	v3 bool
	// defs holds every definition generated so far, by upstream name.
	defs map[string]*spec.Schema
	// deps records the definitions each definition refers to directly, so a
	// v3 group-version document can carry exactly the schemas it reaches.
	deps map[string]map[string]struct{}
	// names memoises type → definition name and guards against recursion
	// (JSONSchemaProps-like self references).
	names map[reflect.Type]string
}

func newGenerator(v3 bool) *generator {
	return &generator{
		v3:    v3,
		defs:  map[string]*spec.Schema{},
		deps:  map[string]map[string]struct{}{},
		names: map[reflect.Type]string{},
	}
}

func (g *generator) refPrefix() string {
	if g.v3 {
		return refPrefixV3
	}
	return refPrefixV2
}

// definitionName returns the upstream OpenAPI name of a named type: the Go
// package path in reversed-domain form followed by the type name, e.g.
// k8s.io/api/core/v1.Pod → io.k8s.api.core.v1.Pod.
func definitionName(t reflect.Type) string {
	if t.Implements(modelNamerType) {
		if n := reflect.Zero(t).Interface().(modelNamer).OpenAPIModelName(); n != "" {
			return n
		}
	}
	parts := strings.Split(t.PkgPath(), "/")
	host := strings.Split(parts[0], ".")
	for i, j := 0, len(host)-1; i < j; i, j = i+1, j-1 {
		host[i], host[j] = host[j], host[i]
	}
	name := append(host, parts[1:]...)
	name = append(name, t.Name())
	return strings.ReplaceAll(strings.Join(name, "."), "-", "_")
}

// define makes sure the definition for the named type t exists and returns its
// name. t must be a struct or a type with its own wire schema.
func (g *generator) define(t reflect.Type) string {
	if name, ok := g.names[t]; ok {
		return name
	}
	name := definitionName(t)
	g.names[t] = name
	deps := map[string]struct{}{}
	g.deps[name] = deps
	// Register before walking so a recursive type refers to itself instead
	// of recursing forever.
	s := &spec.Schema{}
	g.defs[name] = s
	*s = g.buildDefinition(t, deps)
	return name
}

// buildDefinition is the schema of a named type's definition.
func (g *generator) buildDefinition(t reflect.Type, deps map[string]struct{}) spec.Schema {
	var s spec.Schema
	if doc := swaggerDoc(t); doc != nil {
		s.Description = doc[""]
	}
	switch {
	case t.Implements(schemaTyperType) && g.v3 && t.Implements(oneOfTyperType):
		// OpenAPI 3 can say "integer or string" directly, as upstream's v3
		// documents do; with no single type, kubectl explain names the
		// field <IntOrString> or <Quantity> instead of <string>.
		for _, typ := range reflect.Zero(t).Interface().(oneOfTyper).OpenAPIV3OneOfTypes() {
			s.OneOf = append(s.OneOf, typed(typ, ""))
		}
		if t.Implements(schemaFmtType) {
			s.Format = reflect.Zero(t).Interface().(schemaFormatter).OpenAPISchemaFormat()
		}
		if s.Format == formatIntOrString {
			s.AddExtension(extIntOrString, true)
		}
	case t.Implements(schemaTyperType):
		s.Type = reflect.Zero(t).Interface().(schemaTyper).OpenAPISchemaType()
		if t.Implements(schemaFmtType) {
			s.Format = reflect.Zero(t).Interface().(schemaFormatter).OpenAPISchemaFormat()
		}
		if s.Format == formatIntOrString {
			s.AddExtension(extIntOrString, true)
		}
	case hasCustomJSON(t):
		// RawExtension, FieldsV1, runtime.Unknown: their Go fields say nothing
		// about the JSON they carry, which is an arbitrary object.
		s.Type = spec.StringOrArray{"object"}
	default:
		s.Type = spec.StringOrArray{"object"}
		s.Properties = map[string]spec.Schema{}
		g.addFields(&s, t, deps)
		if len(s.Properties) == 0 {
			s.Properties = nil
		}
		sort.Strings(s.Required)
	}
	return s
}

// hasCustomJSON reports whether values of t marshal themselves, in which case
// the struct layout is not the wire layout.
func hasCustomJSON(t reflect.Type) bool {
	return t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType)
}

func swaggerDoc(t reflect.Type) map[string]string {
	if t.Implements(swaggerDocerType) {
		return reflect.Zero(t).Interface().(swaggerDocer).SwaggerDoc()
	}
	if reflect.PointerTo(t).Implements(swaggerDocerType) {
		return reflect.New(t).Interface().(swaggerDocer).SwaggerDoc()
	}
	return nil
}

// jsonField is what a struct field's json tag says about it.
type jsonField struct {
	name     string
	inline   bool
	optional bool
	skip     bool
}

func parseJSONTag(f reflect.StructField) jsonField {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return jsonField{skip: true}
	}
	name, opts, _ := strings.Cut(tag, ",")
	jf := jsonField{name: name}
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "inline":
			jf.inline = true
		case "omitempty", "omitzero":
			jf.optional = true
		}
	}
	// encoding/json flattens any embedded struct whose tag gives no name:
	// k8s.io/api writes `json:",inline"` in places and `json:""` in others
	// (TypeMeta since v0.37), and both mean the same thing.
	if f.Anonymous && name == "" {
		jf.inline = true
	}
	if jf.name == "" {
		jf.name = f.Name
	}
	return jf
}

// addFields adds t's JSON fields to s, flattening inline embedded structs
// (TypeMeta, ProbeHandler, VolumeSource, ...) the way encoding/json does.
func (g *generator) addFields(s *spec.Schema, t reflect.Type, deps map[string]struct{}) {
	doc := swaggerDoc(t)
	owner := ""
	if t.Name() != "" {
		owner = definitionName(t)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		jf := parseJSONTag(f)
		if jf.skip {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if jf.inline && ft.Kind() == reflect.Struct {
			g.addFields(s, ft, deps)
			continue
		}
		if !f.IsExported() {
			continue
		}
		prop := g.fieldSchema(f.Type, doc[jf.name], deps)
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			prop.AddExtension(extPatchStrategy, ps)
		}
		if mk := f.Tag.Get("patchMergeKey"); mk != "" {
			prop.AddExtension(extPatchMergeKey, mk)
		}
		s.Properties[jf.name] = prop
		// Upstream's generator treats a field without omitempty or an
		// +optional marker as required; matching it keeps client-side
		// validation identical.
		if !jf.optional && !isOptional(owner, jf.name) {
			s.Required = append(s.Required, jf.name)
		}
	}
}

// fieldSchema is the schema of one property: the type's schema plus the
// field's description. A described reference is spelt differently per
// dialect: v2 tolerates siblings next to $ref, while OpenAPI 3.0 ignores
// them, so v3 wraps the reference in allOf as upstream does (kubectl explain
// reads the description from the wrapper).
func (g *generator) fieldSchema(t reflect.Type, description string, deps map[string]struct{}) spec.Schema {
	s := g.typeSchema(t, deps)
	if description == "" {
		return s
	}
	if s.Ref.String() != "" && g.v3 {
		return spec.Schema{SchemaProps: spec.SchemaProps{
			Description: description,
			AllOf:       []spec.Schema{s},
		}}
	}
	s.Description = description
	return s
}

// typeSchema is the inline schema for a value of type t: a reference for
// named structs and wire-special types, an inline schema otherwise.
func (g *generator) typeSchema(t reflect.Type, deps map[string]struct{}) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" && t.PkgPath() != "" &&
		(t.Kind() == reflect.Struct || t.Implements(schemaTyperType)) {
		name := g.define(t)
		deps[name] = struct{}{}
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(g.refPrefix() + name)}}
	}
	if t == byteSliceType || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8) {
		return typed("string", "byte")
	}
	switch t.Kind() {
	case reflect.String:
		return typed("string", "")
	case reflect.Bool:
		return typed("boolean", "")
	case reflect.Int, reflect.Int32, reflect.Int16, reflect.Int8,
		reflect.Uint16, reflect.Uint8:
		return typed("integer", "int32")
	case reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return typed("integer", "int64")
	case reflect.Float32:
		return typed("number", "float")
	case reflect.Float64:
		return typed("number", "double")
	case reflect.Slice, reflect.Array:
		items := g.typeSchema(t.Elem(), deps)
		return spec.Schema{SchemaProps: spec.SchemaProps{
			Type:  spec.StringOrArray{"array"},
			Items: &spec.SchemaOrArray{Schema: &items},
		}}
	case reflect.Map:
		values := g.typeSchema(t.Elem(), deps)
		return spec.Schema{SchemaProps: spec.SchemaProps{
			Type:                 spec.StringOrArray{"object"},
			AdditionalProperties: &spec.SchemaOrBool{Allows: true, Schema: &values},
		}}
	case reflect.Struct:
		// An anonymous struct has no name to define; describe it in place.
		s := spec.Schema{SchemaProps: spec.SchemaProps{
			Type:       spec.StringOrArray{"object"},
			Properties: map[string]spec.Schema{},
		}}
		g.addFields(&s, t, deps)
		return s
	default:
		// interface{} (Table cells) and anything else: any JSON value.
		return spec.Schema{}
	}
}

func typed(typ, format string) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{typ}, Format: format}}
}

// addGVK appends gvk to a definition's x-kubernetes-group-version-kind list;
// one Go type may serve several kinds (metav1.Status in every group).
func addGVK(s *spec.Schema, group, version, kind string) {
	entry := map[string]any{"group": group, "version": version, "kind": kind}
	var list []any
	if existing, ok := s.Extensions[extGVK].([]any); ok {
		for _, e := range existing {
			if m, ok := e.(map[string]any); ok &&
				m["group"] == group && m["version"] == version && m["kind"] == kind {
				return
			}
		}
		list = existing
	}
	s.AddExtension(extGVK, append(list, entry))
}

// reachable returns the names of all definitions reachable from roots,
// roots included.
func (g *generator) reachable(roots []string) map[string]struct{} {
	seen := map[string]struct{}{}
	stack := append([]string(nil), roots...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[n]; ok {
			continue
		}
		seen[n] = struct{}{}
		for d := range g.deps[n] {
			stack = append(stack, d)
		}
	}
	return seen
}
