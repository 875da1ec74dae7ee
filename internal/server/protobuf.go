package server

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// useProtobuf makes the typed clients built from rc speak protobuf, JSON
// only where the server has no protobuf form. The in-process components
// decode every pod change their informers see: in protobuf that costs a
// fraction of the CPU JSON does, CPU the API server shares with them.
// Dynamic and metadata clients set their own media types, so rc stays
// right for them.
func useProtobuf(rc *rest.Config) {
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
}
