package apiserver

import (
	"net/http/httptest"
	"testing"
)

// Accept headers client-go and kubectl send.
const (
	acceptClientGoProtobuf = "application/vnd.kubernetes.protobuf,application/json"
	acceptKubectlTable     = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
	acceptMetadataList     = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
	acceptMetadataWatch    = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name     string
		accept   string
		protobuf bool // the kind has a protobuf encoding
		want     output
		wantOK   bool
	}{
		{name: "no Accept is JSON", accept: "", protobuf: true, want: output{media: mediaJSON}, wantOK: true},
		{name: "JSON", accept: "application/json", protobuf: true, want: output{media: mediaJSON}, wantOK: true},
		{name: "anything is JSON", accept: "*/*", protobuf: true, want: output{media: mediaJSON}, wantOK: true},
		{name: "YAML", accept: "application/yaml", protobuf: true, want: output{media: mediaYAML}, wantOK: true},
		{name: "client-go protobuf", accept: acceptClientGoProtobuf, protobuf: true, want: output{media: mediaProtobuf}, wantOK: true},
		{name: "client-go protobuf, kind without protobuf", accept: acceptClientGoProtobuf, protobuf: false, want: output{media: mediaJSON}, wantOK: true},
		{name: "protobuf only, kind without protobuf", accept: mediaProtobuf, protobuf: false, wantOK: false},
		{name: "protobuf watch stream", accept: "application/vnd.kubernetes.protobuf;stream=watch", protobuf: true, want: output{media: mediaProtobuf}, wantOK: true},
		{name: "JSON before protobuf", accept: "application/json, application/vnd.kubernetes.protobuf", protobuf: true, want: output{media: mediaJSON}, wantOK: true},
		{name: "kubectl table", accept: acceptKubectlTable, protobuf: true, want: output{media: mediaJSON, as: "Table"}, wantOK: true},
		{name: "protobuf table is skipped", accept: "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io", protobuf: true, want: output{media: mediaJSON, as: "Table"}, wantOK: true},
		{name: "protobuf table only", accept: "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io", protobuf: true, wantOK: false},
		{name: "metadata list in protobuf", accept: acceptMetadataList, protobuf: true, want: output{media: mediaProtobuf, as: "PartialObjectMetadataList"}, wantOK: true},
		{name: "metadata in protobuf, kind without protobuf", accept: acceptMetadataWatch, protobuf: false, want: output{media: mediaProtobuf, as: "PartialObjectMetadata"}, wantOK: true},
		{name: "metadata of an unknown group", accept: "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=example.com;v=v1", protobuf: true, wantOK: false},
		{name: "nothing acceptable", accept: "text/html", protobuf: true, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/pods", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			got, ok := negotiate(r, tt.protobuf)
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Fatalf("negotiate(%q) = %+v, %v; want %+v, %v", tt.accept, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestStatusMedia(t *testing.T) {
	tests := []struct {
		name   string
		accept string
		want   string
	}{
		{name: "no Accept", accept: "", want: mediaJSON},
		{name: "client-go protobuf", accept: acceptClientGoProtobuf, want: mediaProtobuf},
		{name: "JSON first", accept: "application/json,application/vnd.kubernetes.protobuf", want: mediaJSON},
		// A transformed form is never an error's: the first plain entry decides.
		{name: "metadata client", accept: acceptMetadataList, want: mediaJSON},
		{name: "kubectl table", accept: acceptKubectlTable, want: mediaJSON},
		{name: "YAML", accept: "application/yaml", want: mediaJSON},
		{name: "nothing known", accept: "text/html", want: mediaJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/pods", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			if got := statusMedia(r); got != tt.want {
				t.Fatalf("statusMedia(%q) = %q, want %q", tt.accept, got, tt.want)
			}
		})
	}
}
