package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"sigs.k8s.io/yaml"
)

// Media types the server speaks.
const (
	mediaJSON = "application/json"
	mediaYAML = "application/yaml"
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
	media string // mediaJSON or mediaYAML
	// as is "", "Table", "PartialObjectMetadata" or "PartialObjectMetadataList".
	as string
}

// negotiate picks the response form from the Accept header. ok is false
// when the client accepts nothing the server can produce (406).
func negotiate(r *http.Request) (out output, ok bool) {
	h := r.Header.Get("Accept")
	if h == "" {
		return output{media: mediaJSON}, true
	}
	for _, m := range parseAccept(h) {
		media := ""
		switch m.typ {
		case "application/json", "*/*", "application/*":
			media = mediaJSON
		case "application/yaml":
			media = mediaYAML
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

// writeObject renders v with the given status code.
func writeObject(w http.ResponseWriter, code int, media string, v any) {
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
