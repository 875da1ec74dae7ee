package proxy

import (
	"context"
	"fmt"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/proxy/nft"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// Retry delays after a failed write; each failure doubles the delay.
const (
	retryMin = 500 * time.Millisecond
	retryMax = 30 * time.Second
)

// skeletonKey is the group of the fixed chains; no Service key is empty.
const skeletonKey = ""

// Run programs the kernel until ctx ends, then removes the table. It
// returns an error only if it cannot start (the informers do not sync,
// netlink cannot be opened) or cannot clean up; failed writes are logged
// and retried, as the next attempt may well succeed. Call it once.
func (p *Proxy) Run(ctx context.Context) error {
	defer p.removeHandlers()
	p.cfg.Informers.Start(ctx.Done())
	synced := make([]cache.InformerSynced, 0, len(p.registration))
	for _, r := range p.registration {
		synced = append(synced, r.reg.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("proxy: informers did not sync: %w", ctx.Err())
	}

	w, err := nft.New(nft.Config{Table: p.cfg.TableName, NetNS: int(p.cfg.NetNS), Logger: p.log})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer w.Close()

	p.mu.Lock()
	p.full = true
	p.mu.Unlock()
	var (
		lastWrite time.Time
		retry     time.Duration
		timer     = time.NewTimer(0) // the first, full write at once
	)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := w.Delete(); err != nil {
				return fmt.Errorf("proxy: remove rules: %w", err)
			}
			p.log.Info("proxy stopped, rules removed", "table", p.cfg.TableName)
			return nil
		case <-p.kick:
			if retry > 0 {
				continue // the retry timer is running and will pick this up
			}
			timer.Reset(max(0, p.cfg.MinSyncInterval-time.Since(lastWrite)))
			continue
		case <-timer.C:
		}
		lastWrite = time.Now()
		wrote, err := p.sync(w)
		if err != nil {
			retry = min(max(2*retry, retryMin), retryMax)
			p.log.Error("writing service rules failed; retrying", "err", err, "retryIn", retry)
			timer.Reset(retry)
			continue
		}
		retry = 0
		if wrote {
			p.writes.Add(1)
		}
		select {
		case <-p.ready:
		default:
			close(p.ready)
		}
	}
}

// sync writes what changed since the last write: the Services marked
// dirty, or everything after a start or a failure. On failure the work is
// put back, as a full rebuild: a failed batch changed nothing, but what
// else may have happened to the table is unknown.
func (p *Proxy) sync(w *nft.Writer) (wrote bool, err error) {
	p.mu.Lock()
	dirty, full := p.dirty, p.full
	p.dirty, p.full = map[string]bool{}, false
	p.mu.Unlock()
	if !full && len(dirty) == 0 {
		return false, nil
	}

	start := time.Now()
	if full {
		var groups map[string]*ruleset.Group
		if groups, err = p.buildAll(); err == nil {
			err = w.Replace(groups)
		}
		if err == nil {
			p.log.Info("service rules written", "services", len(groups)-1, "duration", time.Since(start))
		}
	} else {
		changes := make(map[string]*ruleset.Group, len(dirty))
		for key := range dirty {
			if changes[key], err = p.build(key); err != nil {
				break
			}
		}
		if err == nil {
			if err = w.Update(changes); err == nil {
				p.log.Debug("service rules updated", "services", len(changes), "duration", time.Since(start))
			}
		}
	}
	if err != nil {
		p.mu.Lock()
		p.full = true
		p.mu.Unlock()
		return false, err
	}
	p.flushAfterWrite(full, dirty)
	return true, nil
}

// flushAfterWrite deletes the UDP flows the write left stale: of every
// Service after a full write, else of those written. A failure is only
// logged: the rules are right, and the flows expire by themselves.
func (p *Proxy) flushAfterWrite(full bool, dirty map[string]bool) {
	var keys []string
	if full {
		var err error
		if keys, err = p.allServiceKeys(); err != nil {
			p.log.Warn("stale UDP flows not flushed", "err", err)
			return
		}
	} else {
		for k := range dirty {
			keys = append(keys, k)
		}
	}
	n, err := p.flushStaleUDP(keys)
	if err != nil {
		p.log.Warn("stale UDP flows not flushed", "err", err)
	}
	if n > 0 {
		p.log.Debug("stale UDP flows flushed", "flows", n)
	}
}

// build computes one Service's group from the informers' caches; nil
// when the Service is gone or needs no rules.
func (p *Proxy) build(key string) (*ruleset.Group, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, err
	}
	svc, err := p.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	slices, err := p.slicesOf(ns, name)
	if err != nil {
		return nil, err
	}
	return ruleset.Service(p.node, svc, slices), nil
}

func (p *Proxy) slicesOf(ns, name string) ([]*discoveryv1.EndpointSlice, error) {
	var objs []any
	if p.indexed {
		var err error
		if objs, err = p.slices.ByIndex(byService, ns+"/"+name); err != nil {
			return nil, fmt.Errorf("endpoint slices of %s/%s: %w", ns, name, err)
		}
	} else {
		sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
		err := cache.ListAllByNamespace(p.slices, ns, sel, func(o any) { objs = append(objs, o) })
		if err != nil {
			return nil, fmt.Errorf("endpoint slices of %s/%s: %w", ns, name, err)
		}
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// buildAll computes every group: the skeleton and each Service's.
func (p *Proxy) buildAll() (map[string]*ruleset.Group, error) {
	groups := map[string]*ruleset.Group{skeletonKey: ruleset.Skeleton(p.node)}
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, o := range p.slices.List() {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		if keys, _ := sliceServiceIndex(s); len(keys) == 1 {
			bySvc[keys[0]] = append(bySvc[keys[0]], s)
		}
	}
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for _, svc := range svcs {
		key := svc.Namespace + "/" + svc.Name
		if g := ruleset.Service(p.node, svc, bySvc[key]); g != nil {
			groups[key] = g
		}
	}
	return groups, nil
}
