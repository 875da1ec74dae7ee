package nft

import (
	"maps"
	"slices"

	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// plan is the difference between what the kernel holds and what is
// wanted, as the operations of one batch.
type plan struct {
	addChains   []ruleset.Chain // created empty; rules come with writeRules
	flushChains []string        // existing chains whose rules are rewritten
	writeRules  []ruleset.Chain // chains whose rules are (re)added
	delChains   []string
	addSets     []ruleset.Set
	delSets     []string
	addElems    []ruleset.Element
	delElems    []ruleset.Element

	// setDefs are the sets elements may name: those held and those added.
	setDefs map[string]ruleset.Set
	// dropped are the sets deleted in this batch (or deleted and created
	// anew): their elements go with them.
	dropped map[string]bool
	// keyTypes has every set's key type, old or new, to identify
	// elements.
	keyTypes map[string]ruleset.KeyType
	// The state to remember once the batch is in.
	groups  map[string]*ruleset.Group // nil: removed
	owner   map[elemID]string
	skipped int
}

func (p *plan) empty() bool {
	return len(p.addChains)+len(p.flushChains)+len(p.delChains)+len(p.addSets)+len(p.delSets)+
		len(p.addElems)+len(p.delElems) == 0
}

// plan computes the batch that turns the groups held (current) into
// changes. Groups not in changes are left alone.
func (w *Writer) plan(current map[string]*ruleset.Group, changes map[string]*ruleset.Group) *plan {
	p := &plan{
		setDefs:  maps.Clone(w.sets),
		dropped:  map[string]bool{},
		keyTypes: map[string]ruleset.KeyType{},
		groups:   map[string]*ruleset.Group{},
		owner:    maps.Clone(w.owner),
	}
	if current == nil {
		p.owner = map[elemID]string{}
		p.setDefs = map[string]ruleset.Set{}
	}
	for name, s := range p.setDefs {
		p.keyTypes[name] = s.Key
	}
	names := slices.Sorted(maps.Keys(changes))
	for _, name := range names {
		p.chainsAndSets(current[name], changes[name])
	}
	// Elements: release every key a changed group gives up before any
	// group claims one, so that a key moving between two Services in one
	// batch (a ClusterIP freed and reused) is not taken for a conflict.
	for _, name := range names {
		old, want := current[name], changes[name]
		if old == nil {
			continue
		}
		wanted := map[elemID]ruleset.Element{}
		if want != nil {
			for _, e := range want.Elements {
				wanted[p.id(e)] = e
			}
		}
		for _, e := range old.Elements {
			id := p.id(e)
			n, ok := wanted[id]
			if (!ok || !sameVerdict(n.Verdict, e.Verdict)) && !p.dropped[e.Set] {
				p.delElems = append(p.delElems, e)
			}
			if !ok {
				delete(p.owner, id)
			}
		}
	}
	for _, name := range names {
		want := changes[name]
		if want == nil {
			p.groups[name] = nil
			continue
		}
		held := map[elemID]ruleset.Element{}
		if old := current[name]; old != nil {
			for _, e := range old.Elements {
				held[p.id(e)] = e
			}
		}
		kept := *want
		kept.Elements = nil
		for _, e := range want.Elements {
			id := p.id(e)
			if o, taken := p.owner[id]; taken && o != name {
				// First come, first served: the other Service keeps it.
				p.skipped++
				continue
			}
			p.owner[id] = name
			kept.Elements = append(kept.Elements, e)
			if h, ok := held[id]; !ok || !sameVerdict(h.Verdict, e.Verdict) || p.dropped[e.Set] {
				p.addElems = append(p.addElems, e)
			}
		}
		p.groups[name] = &kept
	}
	return p
}

// chainsAndSets adds to p what turns one group's chains and sets from
// old into want (either may be nil).
func (p *plan) chainsAndSets(old, want *ruleset.Group) {
	if old == nil {
		old = &ruleset.Group{}
	}
	if want == nil {
		want = &ruleset.Group{}
	}
	oldSets := map[string]ruleset.Set{}
	for _, s := range old.Sets {
		oldSets[s.Name] = s
	}
	// A set whose definition changes is deleted and created again, so
	// every chain using it must drop its rules first, changed or not.
	redefined := map[string]bool{}
	for _, s := range want.Sets {
		o, ok := oldSets[s.Name]
		switch {
		case !ok:
			p.addSets = append(p.addSets, s)
		case o != s:
			redefined[s.Name] = true
			p.dropped[s.Name] = true
			p.delSets = append(p.delSets, s.Name)
			p.addSets = append(p.addSets, s)
		}
		p.setDefs[s.Name] = s
		p.keyTypes[s.Name] = s.Key
		delete(oldSets, s.Name)
	}
	for _, s := range old.Sets {
		p.keyTypes[s.Name] = s.Key
		if _, gone := oldSets[s.Name]; gone {
			p.dropped[s.Name] = true
			p.delSets = append(p.delSets, s.Name)
			delete(p.setDefs, s.Name)
		}
	}

	oldChains := map[string]ruleset.Chain{}
	for _, c := range old.Chains {
		oldChains[c.Name] = c
	}
	for _, c := range want.Chains {
		o, ok := oldChains[c.Name]
		delete(oldChains, c.Name)
		switch {
		case !ok:
			p.addChains = append(p.addChains, c)
			p.writeRules = append(p.writeRules, c)
		case !sameRules(o.Rules, c.Rules) || usesAny(c, redefined):
			p.flushChains = append(p.flushChains, c.Name)
			p.writeRules = append(p.writeRules, c)
		}
	}
	for _, c := range old.Chains {
		if _, gone := oldChains[c.Name]; gone {
			p.delChains = append(p.delChains, c.Name)
		}
	}
}

func (p *plan) id(e ruleset.Element) elemID {
	return elemID{set: e.Set, key: e.Key.Format(p.keyTypes[e.Set])}
}

func sameRules(a, b []ruleset.Rule) bool {
	return slices.EqualFunc(a, b, func(x, y ruleset.Rule) bool { return x.String() == y.String() })
}

func sameVerdict(a, b *ruleset.Verdict) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// usesAny reports whether a chain's rules name one of sets.
func usesAny(c ruleset.Chain, sets map[string]bool) bool {
	if len(sets) == 0 {
		return false
	}
	for _, r := range c.Rules {
		for _, x := range r {
			switch x := x.(type) {
			case ruleset.SaddrInSet:
				if sets[x.Set] {
					return true
				}
			case ruleset.DaddrInSet:
				if sets[x.Set] {
					return true
				}
			case ruleset.UpdateSet:
				if sets[x.Set] {
					return true
				}
			case ruleset.Dispatch:
				if sets[x.Map] {
					return true
				}
			}
		}
	}
	return false
}

// commit remembers p's result once its batch is in.
func (w *Writer) commit(p *plan) {
	for name, g := range p.groups {
		if g == nil {
			delete(w.groups, name)
		} else {
			w.groups[name] = g
		}
	}
	w.sets = p.setDefs
	w.owner = p.owner
	if p.skipped > 0 {
		w.log.Warn("address and port claimed by two Services; the first keeps it", "skipped", p.skipped)
	}
}
