package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func TestCreateGet(t *testing.T) {
	t.Parallel()
	s, client := newPodStore(t)
	ctx := context.Background()
	in := makePod("default", "a").label("app", "web").obj()
	in.ResourceVersion = "12345" // must not be stored
	created := mustCreate(t, s, in)

	tests := []struct {
		name    string
		run     func() (runtime.Object, error)
		wantErr error
		wantRV  string
	}{
		{name: "get returns created", run: func() (runtime.Object, error) { return s.Get(ctx, podKey(in)) }, wantRV: created.ResourceVersion},
		{name: "create again exists", run: func() (runtime.Object, error) { return s.Create(ctx, podKey(in), in) }, wantErr: ErrExists},
		{name: "get missing", run: func() (runtime.Object, error) { return s.Get(ctx, podPrefix+"default/nope") }, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.run()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			p := got.(*corev1.Pod)
			if p.ResourceVersion != tt.wantRV || p.Labels["app"] != "web" {
				t.Errorf("got rv=%q labels=%v, want rv=%q app=web", p.ResourceVersion, p.Labels, tt.wantRV)
			}
		})
	}

	t.Run("resourceVersion is the mod revision and not stored", func(t *testing.T) {
		resp, err := client.Get(ctx, podKey(in))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(resp.Kvs[0].Value), "resourceVersion") {
			t.Errorf("stored JSON contains resourceVersion: %s", resp.Kvs[0].Value)
		}
		if want := strconv.FormatInt(resp.Kvs[0].ModRevision, 10); created.ResourceVersion != want {
			t.Errorf("created rv = %s, want mod revision %s", created.ResourceVersion, want)
		}
		if in.ResourceVersion != "12345" {
			t.Errorf("Create modified its argument: rv = %q", in.ResourceVersion)
		}
	})
}

func TestGuaranteedUpdate(t *testing.T) {
	t.Parallel()
	s, client := newPodStore(t)
	ctx := context.Background()
	p := mustCreate(t, s, makePod("default", "a").obj())
	key := podKey(p)
	wrongUID := types.UID("other")
	staleRV := "1"

	setNode := func(n string) UpdateFunc {
		return func(cur runtime.Object) (runtime.Object, error) {
			c := cur.(*corev1.Pod).DeepCopy()
			c.Spec.NodeName = n
			return c, nil
		}
	}
	errBoom := errors.New("boom")
	tests := []struct {
		name      string
		key       string
		pre       *Preconditions
		fn        UpdateFunc
		wantErr   error
		wantMsg   string
		wantNode  string
		wantNewRV bool
	}{
		{name: "update writes", key: key, fn: setNode("n1"), wantNode: "n1", wantNewRV: true},
		{name: "same content is a no-op", key: key, fn: setNode("n1"), wantNode: "n1", wantNewRV: false},
		{name: "uid precondition", key: key, pre: &Preconditions{UID: &wrongUID}, fn: setNode("n2"), wantErr: ErrConflict,
			wantMsg: "Precondition failed: UID in precondition: other, UID in object meta: uid-default-a"},
		{name: "rv precondition", key: key, pre: &Preconditions{ResourceVersion: &staleRV}, fn: setNode("n2"), wantErr: ErrConflict,
			wantMsg: "Precondition failed: ResourceVersion in precondition: 1"},
		{name: "fn error aborts", key: key, fn: func(runtime.Object) (runtime.Object, error) { return nil, errBoom }, wantErr: errBoom},
		{name: "missing key", key: podPrefix + "default/nope", fn: setNode("n2"), wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := client.Get(ctx, "/")
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.GuaranteedUpdate(ctx, tt.key, tt.pre, tt.fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error = %q, want containing %q", err, tt.wantMsg)
			}
			if tt.wantErr != nil {
				return
			}
			gp := got.(*corev1.Pod)
			if gp.Spec.NodeName != tt.wantNode {
				t.Errorf("node = %q, want %q", gp.Spec.NodeName, tt.wantNode)
			}
			newRV := rvOf(t, gp) > before.Header.Revision
			if newRV != tt.wantNewRV {
				t.Errorf("rv %s vs store %d: new revision = %v, want %v", gp.ResourceVersion, before.Header.Revision, newRV, tt.wantNewRV)
			}
		})
	}

	t.Run("retries on a concurrent write", func(t *testing.T) {
		calls := 0
		got, err := s.GuaranteedUpdate(ctx, key, nil, func(cur runtime.Object) (runtime.Object, error) {
			calls++
			if calls == 1 {
				// Another writer gets in between our read and our write.
				mustUpdate(t, s, key, func(p *corev1.Pod) { p.Labels = map[string]string{"by": "other"} })
			}
			c := cur.(*corev1.Pod).DeepCopy()
			c.Spec.Hostname = "mine"
			return c, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		gp := got.(*corev1.Pod)
		if calls != 2 || gp.Labels["by"] != "other" || gp.Spec.Hostname != "mine" {
			t.Errorf("calls=%d labels=%v hostname=%q; want 2 calls and both writes kept", calls, gp.Labels, gp.Spec.Hostname)
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	ctx := context.Background()
	p := mustCreate(t, s, makePod("default", "a").obj())
	key := podKey(p)
	wrongUID := types.UID("other")
	rightUID := p.UID
	errNo := errors.New("not allowed")

	tests := []struct {
		name     string
		key      string
		pre      *Preconditions
		validate func(runtime.Object) error
		wantErr  error
	}{
		{name: "uid precondition", key: key, pre: &Preconditions{UID: &wrongUID}, wantErr: ErrConflict},
		{name: "validate rejects", key: key, validate: func(runtime.Object) error { return errNo }, wantErr: errNo},
		{name: "deletes", key: key, pre: &Preconditions{UID: &rightUID, ResourceVersion: &p.ResourceVersion}},
		{name: "already gone", key: key, wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Delete(ctx, tt.key, tt.pre, tt.validate)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if _, err := s.Get(ctx, key); err != nil && !errors.Is(tt.wantErr, ErrNotFound) {
					t.Errorf("object gone after a failed delete: %v", err)
				}
				return
			}
			if got.(*corev1.Pod).Name != "a" || rvOf(t, got) <= rvOf(t, p) {
				t.Errorf("deleted object = %s rv %s, want a with rv after %s", got.(*corev1.Pod).Name, got.(*corev1.Pod).ResourceVersion, p.ResourceVersion)
			}
			if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after delete = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestGuaranteedUpdateOfJSONValue: a value stored as JSON by an earlier
// version is read, a no-op update leaves it alone, and a change writes it
// as protobuf.
func TestGuaranteedUpdateOfJSONValue(t *testing.T) {
	ctx := context.Background()
	s, client := newPodStore(t)
	p := makePod("default", "legacy").node("n1").obj()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	put, err := client.Put(ctx, podKey(p), string(data))
	if err != nil {
		t.Fatal(err)
	}
	setNode := func(n string) UpdateFunc {
		return func(cur runtime.Object) (runtime.Object, error) {
			c := cur.(*corev1.Pod).DeepCopy()
			c.Spec.NodeName = n
			return c, nil
		}
	}
	got, err := s.GuaranteedUpdate(ctx, podKey(p), nil, setNode("n1"))
	if err != nil {
		t.Fatal(err)
	}
	if rv := rvOf(t, got.(*corev1.Pod)); rv != put.Header.Revision {
		t.Errorf("a no-op update of a JSON value wrote: resourceVersion %d, want %d", rv, put.Header.Revision)
	}
	if _, err := s.GuaranteedUpdate(ctx, podKey(p), nil, setNode("n2")); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(ctx, podKey(p))
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.Kvs[0].Value; !bytes.HasPrefix(v, protobufPrefix) {
		t.Errorf("changed value still stored as %q, want protobuf", v[:min(len(v), 20)])
	}
}
