package openapi

import (
	"encoding/json"
	"fmt"

	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// v3Index is the /openapi/v3 discovery document, shaped as client-go's
// openapi client decodes it.
type v3Index struct {
	Paths map[string]v3IndexEntry `json:"paths"`
}

// v3IndexEntry points at one group-version document. The hash in the URL
// changes whenever the document does, which lets clients cache the URL
// forever.
type v3IndexEntry struct {
	ServerRelativeURL string `json:"serverRelativeURL"`
}

// buildV3 generates one OpenAPI 3.0 document per group-version and the index
// that points at them.
func buildV3(kinds []Kind, opts Options) (*v3Docs, error) {
	g := newGenerator(true)
	roots := defineKinds(g, kinds)
	docs := &v3Docs{gv: map[string]document{}}
	index := v3Index{Paths: map[string]v3IndexEntry{}}
	for _, p := range sortedKeys(roots) {
		oa := &spec3.OpenAPI{
			Version:    "3.0.0",
			Info:       &spec.Info{InfoProps: spec.InfoProps{Title: opts.Title, Version: opts.Version}},
			Paths:      &spec3.Paths{Paths: map[string]*spec3.Path{}},
			Components: &spec3.Components{Schemas: map[string]*spec.Schema{}},
		}
		for _, k := range kinds {
			if gvPath(k.GVK.GroupVersion()) != p {
				continue
			}
			for _, r := range routes(k, opts.AdvertiseFieldValidation) {
				path, err := v3Path(g, r)
				if err != nil {
					return nil, err
				}
				oa.Paths.Paths[r.path] = path
			}
		}
		// Only what this group-version reaches: core/v1 alone is most of
		// the full schema, and clients fetch documents one by one.
		for name := range g.reachable(roots[p]) {
			oa.Components.Schemas[name] = g.defs[name]
		}
		body, err := json.Marshal(oa)
		if err != nil {
			return nil, fmt.Errorf("marshal openapi v3 %s: %w", p, err)
		}
		d := newDocument(body)
		docs.gv[p] = d
		index.Paths[p] = v3IndexEntry{ServerRelativeURL: v3Prefix + "/" + p + "?hash=" + d.hash}
	}
	body, err := json.Marshal(index)
	if err != nil {
		return nil, fmt.Errorf("marshal openapi v3 index: %w", err)
	}
	docs.index = newDocument(body)
	return docs, nil
}

func v3Path(g *generator, r route) (*spec3.Path, error) {
	path := &spec3.Path{}
	for _, p := range r.params {
		path.Parameters = append(path.Parameters, v3Param(p))
	}
	for _, o := range r.ops {
		op := &spec3.Operation{OperationProps: spec3.OperationProps{
			Description: o.description,
			OperationId: o.id,
			Tags:        []string{tagOf(o)},
			Responses: &spec3.Responses{ResponsesProps: spec3.ResponsesProps{
				StatusCodeResponses: map[int]*spec3.Response{},
			}},
		}}
		// kubectl finds a resource's kind, and whether the server
		// validates fields, through this extension on the operation.
		op.AddExtension(extAction, o.action)
		op.AddExtension(extGVK, gvkMap(o))
		for _, p := range o.query {
			op.Parameters = append(op.Parameters, v3Param(p))
		}
		if o.body != nil {
			op.RequestBody = &spec3.RequestBody{RequestBodyProps: spec3.RequestBodyProps{
				Content:  v3Content(o.consumes, refTo(g, o.body)),
				Required: o.action != "delete" && o.action != "deletecollection",
			}}
		}
		for code, t := range o.responses {
			op.Responses.StatusCodeResponses[code] = &spec3.Response{ResponseProps: spec3.ResponseProps{
				Description: httpStatusText(code),
				Content:     v3Content(o.produces, refTo(g, t)),
			}}
		}
		op.Responses.StatusCodeResponses[401] = &spec3.Response{ResponseProps: spec3.ResponseProps{Description: "Unauthorized"}}
		switch o.method {
		case "get":
			path.Get = op
		case "post":
			path.Post = op
		case "put":
			path.Put = op
		case "patch":
			path.Patch = op
		case "delete":
			path.Delete = op
		default:
			return nil, fmt.Errorf("route %s: unknown method %q", r.path, o.method)
		}
	}
	return path, nil
}

func v3Param(p param) *spec3.Parameter {
	return &spec3.Parameter{ParameterProps: spec3.ParameterProps{
		Name: p.name, In: p.in, Description: p.description, Required: p.required,
		Schema: &spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{p.typ}, UniqueItems: true}},
	}}
}

func v3Content(mimes []string, s spec.Schema) map[string]*spec3.MediaType {
	content := make(map[string]*spec3.MediaType, len(mimes))
	for _, m := range mimes {
		s := s
		content[m] = &spec3.MediaType{MediaTypeProps: spec3.MediaTypeProps{Schema: &s}}
	}
	return content
}
