package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/etcd"
)

func TestMemberErrorStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", etcd.ErrJoinInProgress), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", etcd.ErrNotYet), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", etcd.ErrNoQuorum), http.StatusServiceUnavailable},
		{fmt.Errorf("x: %w", etcd.ErrNoSuchMember), http.StatusNotFound},
		{fmt.Errorf("x: %w", etcd.ErrAlreadyMember), http.StatusConflict},
		{fmt.Errorf("x: %w", etcd.ErrNameTaken), http.StatusConflict},
		{fmt.Errorf("x: %w", etcd.ErrLastMember), http.StatusConflict},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := memberErrorStatus(tc.err); got != tc.want {
				t.Errorf("status = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestClusterClientRetries checks that a joiner waits out what passes by
// itself (503 with Retry-After) and gives up at once on what does not.
func TestClusterClientRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		codes     []int // answers, in order; the last repeats
		wantCalls int32
		wantErr   bool
	}{
		{name: "settles", codes: []int{503, 503, 201}, wantCalls: 3},
		{name: "conflict is final", codes: []int{409}, wantCalls: 1, wantErr: true},
		{name: "forbidden is final", codes: []int{503, 403}, wantCalls: 2, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(calls.Add(1))
				code := tc.codes[min(n, len(tc.codes))-1]
				if code >= 300 {
					writeClusterError(w, code, fmt.Errorf("answer %d", n))
					return
				}
				writeClusterJSON(w, code, AddMemberResponse{Member: etcd.Member{Name: "x", IDHex: "1"}})
			}))
			t.Cleanup(srv.Close)
			c := &ClusterClient{base: srv.URL, http: srv.Client()}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var resp AddMemberResponse
			err := retryCluster(ctx, true, func() (err error) {
				resp, err = c.addMember(ctx, AddMemberRequest{Name: "x", PeerURL: "https://127.0.0.1:1"})
				return err
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			var ce *ClusterAPIError
			if tc.wantErr && !errors.As(err, &ce) {
				t.Errorf("err = %v, want a ClusterAPIError", err)
			}
			if !tc.wantErr && resp.Member.Name != "x" {
				t.Errorf("answer = %+v", resp)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d calls, want %d", got, tc.wantCalls)
			}
		})
	}
}

func TestRetryClusterUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c := &ClusterClient{base: url, http: &http.Client{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	calls := 0
	err := retryCluster(ctx, true, func() error {
		calls++
		_, err := c.Members(ctx)
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) || calls < 2 {
		t.Errorf("err = %v after %d calls, want retries until the deadline", err, calls)
	}
	calls = 0
	err = retryCluster(context.Background(), false, func() error {
		calls++
		_, err := c.Members(context.Background())
		return err
	})
	if err == nil || calls != 1 {
		t.Errorf("without transient retries: err = %v after %d calls, want one failure", err, calls)
	}
}
