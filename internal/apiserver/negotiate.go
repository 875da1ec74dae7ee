package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Media types the server speaks.
const (
	mediaJSON = "application/json"
	mediaYAML = "application/yaml"
	// mediaProtobuf is Kubernetes' protobuf envelope ("k8s\x00" and a
	// runtime.Unknown naming the kind), which client-go's typed clients
	// ask for first: decoding it costs a fraction of decoding JSON.
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// acceptedMedia is one entry of an Accept header.
type acceptedMedia struct {
	typ    string // "application/json"
	as     string // "Table", "PartialObjectMetadata", "PartialObjectMetadataList", "APIGroupDiscoveryList"
	group  string
	ver    string
	params map[string]string
}

// parseAccept returns the Accept header's entries in order. Quality values
// are ignored: clients of the API list their preference first.
func parseAccept(h string) []acceptedMedia {
	var out []acceptedMedia
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		out = append(out, acceptedMedia{typ: typ, as: params["as"], group: params["g"], ver: params["v"], params: params})
	}
	return out
}

// output describes how to render a response.
type output struct {
	media string // mediaJSON, mediaYAML or mediaProtobuf
	// as is "", "Table", "PartialObjectMetadata" or "PartialObjectMetadataList".
	as string
}

// negotiate picks the response form from the Accept header; protobuf
// tells whether the kind's objects have a protobuf encoding (without one,
// a client asking for them in protobuf gets its next choice, as upstream
// serves such kinds). ok is false when the client accepts nothing the
// server can produce (406).
func negotiate(r *http.Request, protobuf bool) (out output, ok bool) {
	h := r.Header.Get("Accept")
	if h == "" {
		return output{media: mediaJSON}, true
	}
	for _, m := range parseAccept(h) {
		media := ""
		switch m.typ {
		case mediaJSON, "*/*", "application/*":
			media = mediaJSON
		case mediaYAML:
			media = mediaYAML
		case mediaProtobuf:
			// A Table has no protobuf encoding (upstream serves it as
			// JSON or YAML only); metadata has one whatever the kind.
			if m.as == "Table" || (m.as == "" && !protobuf) {
				continue
			}
			media = mediaProtobuf
		default:
			continue
		}
		switch m.as {
		case "":
			return output{media: media}, true
		case "Table":
			if m.group == "meta.k8s.io" && (m.ver == "v1" || m.ver == "v1beta1") {
				return output{media: media, as: "Table"}, true
			}
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			if m.group == "meta.k8s.io" && (m.ver == "v1" || m.ver == "v1beta1") {
				return output{media: media, as: m.as}, true
			}
		}
	}
	return output{}, false
}

// negotiate is negotiate for one of the server's kinds.
func (s *Server) negotiate(r *http.Request, info *requestInfo) (output, bool) {
	return negotiate(r, s.protobuf[info.res])
}

// statusMedia picks the media type of a metav1.Status answer (an error, a
// binding's success). As upstream, only entries asking for an object as
// it is (no "as") count, so a client asking for a Table or metadata
// still gets a plain Status; that is protobuf when asked for before JSON.
func statusMedia(r *http.Request) string {
	for _, m := range parseAccept(r.Header.Get("Accept")) {
		if m.as != "" {
			continue
		}
		switch m.typ {
		case mediaProtobuf:
			return mediaProtobuf
		case mediaJSON, mediaYAML, "*/*", "application/*":
			return mediaJSON
		}
	}
	return mediaJSON
}

// writeObject renders v with the given status code. Protobuf needs v to
// be a runtime.Object of a kind with a protobuf encoding; negotiation
// offers it only then, and anything else is answered in JSON, which
// clients decode by the Content-Type as well.
func writeObject(w http.ResponseWriter, code int, media string, v any) {
	if media == mediaProtobuf {
		if obj, ok := v.(runtime.Object); ok {
			if data, err := encodeProtobuf(obj); err == nil {
				w.Header().Set("Content-Type", mediaProtobuf)
				w.WriteHeader(code)
				_, _ = w.Write(data)
				return
			}
		}
	}
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if media == mediaYAML {
		if y, err := yaml.JSONToYAML(data); err == nil {
			w.Header().Set("Content-Type", mediaYAML)
			w.WriteHeader(code)
			_, _ = w.Write(y)
			return
		}
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(code)
	_, _ = w.Write(data)
	_, _ = w.Write([]byte{'\n'})
}

// bodyMedia returns the request body's media type without parameters.
func bodyMedia(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return mediaJSON
	}
	typ, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return typ
}
