package manager

import (
	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/namespace"
)

// Controllers lists every controller the manager runs, in start order.
// Adding one is a package with a Descriptor plus one line here.
func Controllers() []controller.Descriptor {
	return []controller.Descriptor{
		namespace.Descriptor,
	}
}
