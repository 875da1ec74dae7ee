package storage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
)

// Values of ListOptions.ResourceVersionMatch, as in the Kubernetes API.
const (
	MatchNotOlderThan = "NotOlderThan"
	MatchExact        = "Exact"
)

// maxPageFetch caps how many keys one etcd range reads while filling a
// filtered page, so a selective predicate over a big resource does not
// pull everything into memory at once.
const maxPageFetch = 10000

// continueToken is the decoded form of ListResult.Continue. Its JSON shape
// matches upstream's, so tokens look familiar to anyone debugging them.
type continueToken struct {
	APIVersion string `json:"v"`
	// ResourceVersion is the revision every page of the list reads at.
	ResourceVersion int64 `json:"rv"`
	// StartKey is where the next page starts, relative to the list prefix.
	StartKey string `json:"start"`
}

const continueVersion = "meta.k8s.io/v1"

func encodeContinue(rev int64, startSuffix string) (string, error) {
	data, err := json.Marshal(continueToken{APIVersion: continueVersion, ResourceVersion: rev, StartKey: startSuffix})
	if err != nil {
		return "", fmt.Errorf("encode continue token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(data), nil
}

func decodeContinue(token string) (rev int64, startSuffix string, err error) {
	data, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %w", ErrInvalidContinue, err)
	}
	var c continueToken
	if err := json.Unmarshal(data, &c); err != nil {
		return 0, "", fmt.Errorf("%w: %w", ErrInvalidContinue, err)
	}
	if c.APIVersion != continueVersion {
		return 0, "", fmt.Errorf("%w: version %q", ErrInvalidContinue, c.APIVersion)
	}
	if c.ResourceVersion <= 0 || c.StartKey == "" {
		return 0, "", fmt.Errorf("%w: missing revision or start key", ErrInvalidContinue)
	}
	return c.ResourceVersion, c.StartKey, nil
}

// listRevisions turns opts into the revision to read at (0: latest) and
// the minimum revision the answer must reflect.
//
// As upstream, a resourceVersion with no match and a limit means "exact":
// that is how old clients paged consistently before continue tokens.
func listRevisions(opts ListOptions) (readAt, atLeast int64, err error) {
	rv, err := ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return 0, 0, err
	}
	switch opts.ResourceVersionMatch {
	case MatchExact:
		if rv == 0 {
			return 0, 0, fmt.Errorf("%w: Exact needs a resourceVersion other than 0", ErrInvalidResourceVersion)
		}
		return rv, 0, nil
	case MatchNotOlderThan:
		return 0, rv, nil
	case "":
		if rv > 0 && opts.Limit > 0 {
			return rv, 0, nil
		}
		return 0, rv, nil
	default:
		return 0, 0, fmt.Errorf("%w: unknown resourceVersionMatch %q", ErrInvalidResourceVersion, opts.ResourceVersionMatch)
	}
}

// List implements Interface. All pages of one list read at the revision of
// the first, so a paged list is one consistent snapshot, or ErrExpired
// once compaction has passed it.
func (s *Etcd) List(ctx context.Context, prefix string, opts ListOptions) (*ListResult, error) {
	defer s.opts.Metrics.observe("list", s.opts.Resource, time.Now())
	start := prefix
	var readAt, atLeast int64
	if opts.Continue != "" {
		rev, suffix, err := decodeContinue(opts.Continue)
		if err != nil {
			return nil, err
		}
		readAt, start = rev, prefix+suffix
	} else {
		var err error
		if readAt, atLeast, err = listRevisions(opts); err != nil {
			return nil, err
		}
	}

	end := rangeEnd(prefix)
	filtered := !opts.Predicate.Empty()
	fetch := opts.Limit
	out := &ListResult{Items: []runtime.Object{}}
	for {
		ops := []clientv3.OpOption{clientv3.WithRange(end)}
		if readAt > 0 {
			ops = append(ops, clientv3.WithRev(readAt))
		}
		if fetch > 0 {
			ops = append(ops, clientv3.WithLimit(fetch))
		}
		resp, err := s.client.Get(ctx, start, ops...)
		if err != nil {
			err = mapEtcdError(err)
			if readAt > 0 {
				return nil, fmt.Errorf("list %q at %d: %w", prefix, readAt, err)
			}
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
		if readAt == 0 {
			readAt = resp.Header.Revision
		}
		for i, kv := range resp.Kvs {
			obj, err := s.decode(kv.Value, kv.ModRevision)
			if err != nil {
				return nil, fmt.Errorf("list %q: key %q: %w", prefix, kv.Key, err)
			}
			ok, err := opts.Predicate.Matches(obj)
			if err != nil {
				return nil, fmt.Errorf("list %q: key %q: %w", prefix, kv.Key, err)
			}
			if ok {
				out.Items = append(out.Items, obj)
			}
			if opts.Limit > 0 && int64(len(out.Items)) == opts.Limit {
				if i < len(resp.Kvs)-1 || resp.More {
					next := string(kv.Key) + "\x00"
					if out.Continue, err = encodeContinue(readAt, next[len(prefix):]); err != nil {
						return nil, err
					}
					if !filtered {
						remaining := resp.Count - int64(i+1)
						out.RemainingItemCount = &remaining
					}
				}
				return s.finishList(out, readAt, atLeast)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return s.finishList(out, readAt, atLeast)
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		// A selective predicate may need many keys per match: read more
		// each round, as upstream does, instead of one page's worth.
		fetch = min(2*fetch, maxPageFetch)
	}
}

func (s *Etcd) finishList(out *ListResult, rev, atLeast int64) (*ListResult, error) {
	if atLeast > rev {
		return nil, fmt.Errorf("list at resourceVersion %d, store is at %d: %w", atLeast, rev, ErrTooLarge)
	}
	out.ResourceVersion = rev
	return out, nil
}
