package server

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRetryTransient(t *testing.T) {
	leaderChanged := apierrors.NewInternalError(errors.New("etcdserver: leader changed"))
	invalid := apierrors.NewBadRequest("bad")
	tests := []struct {
		name string
		// errs are fn's results, one per call; nil after the last.
		errs      []error
		cancel    bool
		wantErr   error
		wantCalls int
	}{
		{name: "success at once", wantCalls: 1},
		{name: "leader changed, then success", errs: []error{leaderChanged, leaderChanged}, wantCalls: 3},
		{name: "timeout, then success", errs: []error{apierrors.NewTimeoutError("slow", 1)}, wantCalls: 2},
		{name: "unavailable, then success", errs: []error{apierrors.NewServiceUnavailable("starting")}, wantCalls: 2},
		{name: "a bad request is returned", errs: []error{invalid}, wantErr: invalid, wantCalls: 1},
		{name: "not found is returned", errs: []error{apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x")},
			wantErr: apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"), wantCalls: 1},
		{name: "a context that ends stops the retries", errs: []error{leaderChanged, leaderChanged, leaderChanged},
			cancel: true, wantErr: context.Canceled, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			calls := 0
			err := retryTransient(ctx, time.Millisecond, 2*time.Millisecond, func() error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && (err == nil || err.Error() != tt.wantErr.Error()):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
		})
	}
}
