package apiserver

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// Operation is the kind of write being admitted.
type Operation string

// The operations admission sees.
const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
	Delete Operation = "DELETE"
)

// Attributes describe one write for admission.
type Attributes struct {
	Operation   Operation
	Resource    *resource.Resource
	Subresource string
	Namespace   string
	Name        string
	// Object is the object to be stored (nil on delete); admitters may
	// change it. Old is the stored object (nil on create).
	Object, Old runtime.Object
	DryRun      bool
}

// Admitter may change or reject a write after defaulting and validation and
// before it is stored. An error is returned to the client as is, so it
// should be an API status error.
type Admitter interface {
	Admit(ctx context.Context, a *Attributes) error
}

// Releaser is an optional Admitter ability: give back what Admit took (an
// allocated IP, say) when the write it admitted did not happen.
type Releaser interface {
	Release(ctx context.Context, a *Attributes)
}

// Committer is an optional Admitter ability: learn that an admitted write
// was stored (to free what a deleted object held, say).
type Committer interface {
	Committed(ctx context.Context, a *Attributes)
}

// admit runs the chain; on failure it releases what earlier admitters took.
func (s *Server) admit(ctx context.Context, a *Attributes) error {
	for i, ad := range s.cfg.Admission {
		if err := ad.Admit(ctx, a); err != nil {
			s.release(ctx, a, s.cfg.Admission[:i])
			return err
		}
	}
	return nil
}

// release tells admitters that the admitted write did not happen.
func (s *Server) release(ctx context.Context, a *Attributes, chain []Admitter) {
	if chain == nil {
		chain = s.cfg.Admission
	}
	for _, ad := range chain {
		if r, ok := ad.(Releaser); ok {
			r.Release(ctx, a)
		}
	}
}

// committed tells admitters that the write was stored.
func (s *Server) committed(ctx context.Context, a *Attributes) {
	if a.DryRun {
		return
	}
	for _, ad := range s.cfg.Admission {
		if c, ok := ad.(Committer); ok {
			c.Committed(ctx, a)
		}
	}
}
