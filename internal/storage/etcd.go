package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Options are the optional dependencies of a store or a watch cache.
type Options struct {
	// Resource names the resource in metrics and logs ("pods").
	Resource string
	// Metrics, if set, records latencies and watcher counts.
	Metrics *Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Resource == "" {
		o.Resource = "unknown"
	}
	o.Logger = o.Logger.With("resource", o.Resource)
	return o
}

// Etcd is an Interface that reads and writes etcd directly.
type Etcd struct {
	client  *clientv3.Client
	newFunc func() runtime.Object
	codec   Codec
	opts    Options
	// written passes the objects decoded after writes on to the watch.
	written written
}

var _ Interface = (*Etcd)(nil)

// NewEtcd returns a store for one resource. newFunc returns an empty
// object of the resource's type (&corev1.Pod{}), to decode into.
func NewEtcd(client *clientv3.Client, newFunc func() runtime.Object, opts Options) *Etcd {
	return &Etcd{client: client, newFunc: newFunc, opts: opts.withDefaults()}
}

// decode returns a new object decoded from data with resourceVersion rev.
func (s *Etcd) decode(data []byte, rev int64) (runtime.Object, error) {
	obj := s.newFunc()
	if err := s.codec.Decode(data, rev, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// Create implements Interface.
func (s *Etcd) Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	defer s.opts.Metrics.observe("create", s.opts.Resource, time.Now())
	data, err := s.codec.Encode(obj)
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", key, err)
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", key, mapEtcdError(err))
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("create %q: %w", key, ErrExists)
	}
	// Decoding what was stored (rather than copying obj) makes the result
	// identical to what a later Get returns.
	out, err := s.decode(data, resp.Header.Revision)
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", key, err)
	}
	s.written.put(key, resp.Header.Revision, out)
	return out, nil
}

// Get implements Interface.
func (s *Etcd) Get(ctx context.Context, key string) (runtime.Object, error) {
	defer s.opts.Metrics.observe("get", s.opts.Resource, time.Now())
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, mapEtcdError(err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("get %q: %w", key, ErrNotFound)
	}
	obj, err := s.decode(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return obj, nil
}

// checkPreconditions reports the first precondition obj fails.
func checkPreconditions(pre *Preconditions, obj runtime.Object) error {
	if pre == nil {
		return nil
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("check preconditions on %T: %w", obj, err)
	}
	if pre.UID != nil && *pre.UID != acc.GetUID() {
		return &PreconditionError{Field: "UID", Want: string(*pre.UID), Got: string(acc.GetUID())}
	}
	if pre.ResourceVersion != nil && *pre.ResourceVersion != acc.GetResourceVersion() {
		return &PreconditionError{Field: "ResourceVersion", Want: *pre.ResourceVersion, Got: acc.GetResourceVersion()}
	}
	return nil
}

// GuaranteedUpdate implements Interface. Every attempt decodes a fresh
// copy for fn, so an fn that mutates its argument by mistake cannot
// corrupt a retry or a no-op result.
func (s *Etcd) GuaranteedUpdate(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc) (runtime.Object, error) {
	defer s.opts.Metrics.observe("update", s.opts.Resource, time.Now())
	return s.guaranteedUpdate(ctx, key, pre, fn)
}

// GuaranteedUpdateFrom is GuaranteedUpdate starting from cached, the
// object at key as a watch cache last saw it, instead of reading etcd: the
// write is conditional on cached's revision, so a stale cache costs a
// retry, never a lost update. Whenever the cached attempt proves nothing
// (preconditions or fn refuse a possibly stale object, fn changes nothing,
// or someone wrote meanwhile) the update starts over from a read. cached
// is not modified.
func (s *Etcd) GuaranteedUpdateFrom(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc, cached runtime.Object) (runtime.Object, error) {
	defer s.opts.Metrics.observe("update", s.opts.Resource, time.Now())
	out, done, err := s.updateCached(ctx, key, pre, fn, cached)
	if done {
		return out, err
	}
	return s.guaranteedUpdate(ctx, key, pre, fn)
}

// updateCached makes one update attempt from cached; done is false when
// the caller must start over from a read.
func (s *Etcd) updateCached(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc, cached runtime.Object) (out runtime.Object, done bool, err error) {
	rev, err := objectRevision(cached)
	if err != nil || rev == 0 {
		return nil, false, nil
	}
	// fn gets a copy, as it gets a fresh decode from etcd: cached is shared.
	cur := cached.DeepCopyObject()
	if checkPreconditions(pre, cur) != nil {
		return nil, false, nil
	}
	next, err := fn(cur)
	if err != nil {
		return nil, false, nil
	}
	data, err := s.codec.Encode(next)
	if err != nil {
		return nil, true, fmt.Errorf("update %q: %w", key, err)
	}
	if orig, err := s.codec.Encode(cached); err != nil || bytes.Equal(data, orig) {
		// A no-op on what may be a stale copy says nothing about the
		// current object.
		return nil, false, nil
	}
	txn, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return nil, true, fmt.Errorf("update %q: %w", key, mapEtcdError(err))
	}
	if !txn.Succeeded {
		return nil, false, nil
	}
	if out, err = s.decode(data, txn.Header.Revision); err != nil {
		return nil, true, fmt.Errorf("update %q: %w", key, err)
	}
	s.written.put(key, txn.Header.Revision, out)
	return out, true, nil
}

// guaranteedUpdate is GuaranteedUpdate's read-modify-write loop.
func (s *Etcd) guaranteedUpdate(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc) (runtime.Object, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("update %q: %w", key, mapEtcdError(err))
	}
	kvs := resp.Kvs
	for {
		if len(kvs) == 0 {
			return nil, fmt.Errorf("update %q: %w", key, ErrNotFound)
		}
		kv := kvs[0]
		cur, err := s.decode(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, fmt.Errorf("update %q: %w", key, err)
		}
		if err := checkPreconditions(pre, cur); err != nil {
			return nil, fmt.Errorf("update %q: %w", key, err)
		}
		// A value in an older format compares by its current encoding
		// (made before fn, which may change cur), so a no-op does not
		// rewrite it, and bump its resourceVersion, only to convert it.
		stored := kv.Value
		if !s.codec.Current(stored) {
			if stored, err = s.codec.Encode(cur); err != nil {
				return nil, fmt.Errorf("update %q: %w", key, err)
			}
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		data, err := s.codec.Encode(next)
		if err != nil {
			return nil, fmt.Errorf("update %q: %w", key, err)
		}
		if bytes.Equal(data, stored) {
			// Nothing changed: no write, no new revision, no watch event.
			return s.decode(kv.Value, kv.ModRevision)
		}
		txn, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(data))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("update %q: %w", key, mapEtcdError(err))
		}
		if txn.Succeeded {
			out, err := s.decode(data, txn.Header.Revision)
			if err != nil {
				return nil, fmt.Errorf("update %q: %w", key, err)
			}
			s.written.put(key, txn.Header.Revision, out)
			return out, nil
		}
		// Someone wrote in between; the Else branch already read the new
		// state, so the retry costs no extra round trip.
		kvs = txn.Responses[0].GetResponseRange().Kvs
	}
}

// Delete implements Interface. The returned object carries the deletion's
// revision as its resourceVersion, as the DELETED watch event does.
func (s *Etcd) Delete(ctx context.Context, key string, pre *Preconditions, validate func(cur runtime.Object) error) (runtime.Object, error) {
	defer s.opts.Metrics.observe("delete", s.opts.Resource, time.Now())
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("delete %q: %w", key, mapEtcdError(err))
	}
	kvs := resp.Kvs
	for {
		if len(kvs) == 0 {
			return nil, fmt.Errorf("delete %q: %w", key, ErrNotFound)
		}
		kv := kvs[0]
		cur, err := s.decode(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, fmt.Errorf("delete %q: %w", key, err)
		}
		if err := checkPreconditions(pre, cur); err != nil {
			return nil, fmt.Errorf("delete %q: %w", key, err)
		}
		if validate != nil {
			if err := validate(cur); err != nil {
				return nil, err
			}
		}
		txn, err := s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("delete %q: %w", key, mapEtcdError(err))
		}
		if txn.Succeeded {
			if err := setResourceVersion(cur, txn.Header.Revision); err != nil {
				return nil, fmt.Errorf("delete %q: %w", key, err)
			}
			return cur, nil
		}
		kvs = txn.Responses[0].GetResponseRange().Kvs
	}
}

// mapEtcdError turns etcd's revision errors into this package's sentinels.
func mapEtcdError(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrCompacted):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.Is(err, rpctypes.ErrFutureRev):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

// rangeEnd returns the end of the etcd range for key: the whole prefix if
// key ends in "/", else just key.
func rangeEnd(key string) string {
	if strings.HasSuffix(key, "/") {
		return clientv3.GetPrefixRangeEnd(key)
	}
	return key + "\x00"
}

// isCreate reports whether a PUT event created its key.
func isCreate(ev *clientv3.Event) bool {
	return ev.Type == mvccpb.Event_PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision
}
