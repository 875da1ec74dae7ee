package openapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// buildV2 generates the Swagger 2.0 document of all kinds, in JSON and in
// the protobuf encoding that client-go's discovery client insists on.
func buildV2(kinds []Kind, opts Options) (*v2Docs, error) {
	sw, err := swaggerV2(kinds, opts)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(sw)
	if err != nil {
		return nil, fmt.Errorf("marshal openapi v2: %w", err)
	}
	// gnostic parses the JSON into its protobuf model; this is the same
	// model the client decodes into, so a document that survives this step
	// is one kubectl can read.
	doc, err := openapi_v2.ParseDocument(body)
	if err != nil {
		return nil, fmt.Errorf("convert openapi v2 to protobuf: %w", err)
	}
	pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("marshal openapi v2 protobuf: %w", err)
	}
	return &v2Docs{json: newDocument(body), proto: newDocument(pb)}, nil
}

// swaggerV2 builds the v2 document as kube-openapi spec types.
func swaggerV2(kinds []Kind, opts Options) (*spec.Swagger, error) {
	g := newGenerator(false)
	defineKinds(g, kinds)
	paths := map[string]spec.PathItem{}
	for _, k := range kinds {
		for _, r := range routes(k, opts.AdvertiseFieldValidation) {
			item, err := v2PathItem(g, r)
			if err != nil {
				return nil, err
			}
			paths[r.path] = item
		}
	}
	defs := make(spec.Definitions, len(g.defs))
	for name, s := range g.defs {
		defs[name] = *s
	}
	return &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: opts.Title, Version: opts.Version}},
		Paths:       &spec.Paths{Paths: paths},
		Definitions: defs,
	}}, nil
}

func v2PathItem(g *generator, r route) (spec.PathItem, error) {
	var item spec.PathItem
	for _, p := range r.params {
		item.Parameters = append(item.Parameters, v2Param(p))
	}
	for _, o := range r.ops {
		op := &spec.Operation{OperationProps: spec.OperationProps{
			Description: o.description,
			ID:          o.id,
			Consumes:    o.consumes,
			Produces:    o.produces,
			Schemes:     []string{"https"},
			Tags:        []string{tagOf(o)},
			Responses:   &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: map[int]spec.Response{}}},
		}}
		op.AddExtension(extAction, o.action)
		op.AddExtension(extGVK, gvkMap(o))
		for _, p := range o.query {
			op.Parameters = append(op.Parameters, v2Param(p))
		}
		if o.body != nil {
			body := refTo(g, o.body)
			op.Parameters = append(op.Parameters, spec.Parameter{ParamProps: spec.ParamProps{
				Name: "body", In: "body", Required: o.action != "delete" && o.action != "deletecollection", Schema: &body,
			}})
		}
		for code, t := range o.responses {
			s := refTo(g, t)
			op.Responses.StatusCodeResponses[code] = spec.Response{ResponseProps: spec.ResponseProps{
				Description: httpStatusText(code), Schema: &s,
			}}
		}
		op.Responses.StatusCodeResponses[401] = spec.Response{ResponseProps: spec.ResponseProps{Description: "Unauthorized"}}
		switch o.method {
		case "get":
			item.Get = op
		case "post":
			item.Post = op
		case "put":
			item.Put = op
		case "patch":
			item.Patch = op
		case "delete":
			item.Delete = op
		default:
			return item, fmt.Errorf("route %s: unknown method %q", r.path, o.method)
		}
	}
	return item, nil
}

func v2Param(p param) spec.Parameter {
	sp := spec.Parameter{ParamProps: spec.ParamProps{
		Name: p.name, In: p.in, Description: p.description, Required: p.required,
	}}
	sp.Type = p.typ
	sp.UniqueItems = true
	return sp
}

// refTo is a reference to the definition of Go type t in g's dialect.
func refTo(g *generator, t reflect.Type) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(g.refPrefix() + g.define(t))}}
}

// gvkMap is the operation-level x-kubernetes-group-version-kind: a single
// object, unlike the list on definitions.
func gvkMap(o operation) map[string]any {
	return map[string]any{"group": o.gvk.Group, "version": o.gvk.Version, "kind": o.gvk.Kind}
}

// tagOf groups operations as upstream does: core_v1, apps_v1.
func tagOf(o operation) string {
	group := "core"
	if o.gvk.Group != "" {
		group = strings.TrimSuffix(o.gvk.Group, ".k8s.io")
	}
	return sanitizeTag(group) + "_" + o.gvk.Version
}

func sanitizeTag(s string) string {
	out := []rune(s)
	for i, r := range out {
		if r == '.' || r == '-' {
			out[i] = '_'
		}
	}
	return string(out)
}

func httpStatusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	default:
		return fmt.Sprint(code)
	}
}

// sortedKeys returns a map's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
