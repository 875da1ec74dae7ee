// Package nft writes the service proxy's ruleset (groups of package
// ruleset) into the kernel: one nftables table of family ip that the
// proxy owns, changed one netlink batch at a time, so that packets never
// meet a half-applied change and a failed change leaves the table as it
// was.
package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"

	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// Config says which table to write and where.
type Config struct {
	// Table names the table (family ip). It is the proxy's alone: it is
	// deleted and rebuilt on Replace.
	Table string
	// NetNS is a file descriptor of the network namespace to write in;
	// 0 means the caller's own.
	NetNS  int
	Logger *slog.Logger
}

// Writer keeps one table equal to a set of groups. It remembers what it
// last wrote, so that an Update sends only the difference. It is not safe
// for concurrent use.
type Writer struct {
	// conn builds batches, which send carries to the kernel; read is a
	// plain connection, for callers that read the table back.
	conn  *nftables.Conn
	send  *sender
	read  *nftables.Conn
	table *nftables.Table
	log   *slog.Logger

	// What the kernel holds, as of the last successful batch.
	groups map[string]*ruleset.Group
	sets   map[string]ruleset.Set
	// owner says which group an element key belongs to, so that two
	// Services claiming the same address and port (an external IP set on
	// both, say) cannot make every batch fail on a duplicate element.
	owner map[elemID]string

	lastID uint32
}

// elemID identifies an element: its set and its key as nft prints it.
type elemID struct{ set, key string }

// New opens a netlink connection for the table; nothing is written yet.
func New(cfg Config) (*Writer, error) {
	if cfg.Table == "" {
		return nil, errors.New("nft: table name is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	send, err := newSender(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithTestDial(send.roundTrip))
	if err != nil {
		send.close()
		return nil, fmt.Errorf("nftables: %w", err)
	}
	read, err := nftables.New(nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		send.close()
		return nil, fmt.Errorf("nftables netlink connection: %w", err)
	}
	return &Writer{
		conn:   conn,
		send:   send,
		read:   read,
		table:  &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4},
		log:    cfg.Logger,
		groups: map[string]*ruleset.Group{},
		sets:   map[string]ruleset.Set{},
		owner:  map[elemID]string{},
	}, nil
}

// Close closes the netlink sockets; the table stays.
func (w *Writer) Close() error {
	_ = w.conn.CloseLasting()
	return w.send.close()
}

// Conn returns a netlink connection in the table's namespace, for
// callers that read the table.
func (w *Writer) Conn() *nftables.Conn { return w.read }

// Replace deletes the table if it exists and creates it holding exactly
// groups, in one batch: whatever an earlier run or anyone else left there
// is gone, without a moment with no rules at all.
func (w *Writer) Replace(groups map[string]*ruleset.Group) error {
	p := w.plan(nil, groups)
	// Adding the table first makes the delete valid when it is absent.
	w.conn.AddTable(w.table)
	w.conn.DelTable(w.table)
	w.conn.AddTable(w.table)
	if err := w.write(p); err != nil {
		return fmt.Errorf("replace table %s: %w", w.table.Name, err)
	}
	w.groups, w.sets, w.owner = map[string]*ruleset.Group{}, map[string]ruleset.Set{}, map[elemID]string{}
	w.commit(p)
	return nil
}

// Update rewrites the groups in changes (nil: remove the group) and
// leaves all others alone, in one batch.
func (w *Writer) Update(changes map[string]*ruleset.Group) error {
	if len(changes) == 0 {
		return nil
	}
	p := w.plan(w.groups, changes)
	if p.empty() {
		w.commit(p)
		return nil
	}
	if err := w.write(p); err != nil {
		return fmt.Errorf("update table %s: %w", w.table.Name, err)
	}
	w.commit(p)
	return nil
}

// Delete removes the table, if it exists.
func (w *Writer) Delete() error {
	w.conn.AddTable(w.table)
	w.conn.DelTable(w.table)
	if err := w.flush(); err != nil {
		return fmt.Errorf("delete table %s: %w", w.table.Name, err)
	}
	w.groups, w.sets, w.owner = map[string]*ruleset.Group{}, map[string]ruleset.Set{}, map[elemID]string{}
	return nil
}

// write sends p as one batch (after whatever the caller queued).
func (w *Writer) write(p *plan) error {
	start := time.Now()
	rules, err := w.queue(p)
	if err != nil {
		w.discard()
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.log.Debug("nftables batch applied", "table", w.table.Name, "duration", time.Since(start),
		"newChains", len(p.addChains), "rewrittenChains", len(p.flushChains), "deletedChains", len(p.delChains),
		"rules", rules, "newElements", len(p.addElems), "deletedElements", len(p.delElems))
	return nil
}

// queue adds p's messages to the batch. The order matters to the kernel,
// which checks references as each message comes: chains and sets before
// the rules and elements that name them; a chain's or set's users gone
// before it is.
func (w *Writer) queue(p *plan) (rules int, err error) {
	chain := func(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: w.table} }

	for _, c := range p.addChains {
		w.conn.AddChain(w.kernelChain(c))
	}
	for _, name := range p.flushChains {
		w.conn.FlushChain(chain(name))
	}
	for _, name := range p.delChains {
		w.conn.FlushChain(chain(name))
	}
	if err := w.elements(p.delElems, p.setDefs, w.conn.SetDeleteElements); err != nil {
		return 0, err
	}
	// Sets before chains: a deleted map's elements may name a deleted
	// chain.
	for _, name := range p.delSets {
		w.conn.DelSet(&nftables.Set{Table: w.table, Name: name})
	}
	for _, name := range p.delChains {
		w.conn.DelChain(chain(name))
	}
	for _, s := range p.addSets {
		ks := w.kernelSet(s)
		ks.ID = w.nextID()
		if err := w.conn.AddSet(ks, nil); err != nil {
			return 0, fmt.Errorf("add set %s: %w", s.Name, err)
		}
	}
	for _, c := range p.writeRules {
		for _, r := range c.Rules {
			exprs, err := rule(r)
			if err != nil {
				return 0, fmt.Errorf("chain %s: %w", c.Name, err)
			}
			w.conn.AddRule(&nftables.Rule{Table: w.table, Chain: chain(c.Name), Exprs: exprs})
			rules++
		}
	}
	if err := w.elements(p.addElems, p.setDefs, w.conn.SetAddElements); err != nil {
		return 0, err
	}
	return rules, nil
}

// flush sends the batch built so far and returns the kernel's verdict.
func (w *Writer) flush() error {
	w.send.err = nil
	if err := w.conn.Flush(); err != nil {
		return err
	}
	return w.send.err
}

// discard drops the messages queued so far, which the library would
// otherwise send with the next batch.
func (w *Writer) discard() {
	w.send.drop = true
	_ = w.conn.Flush()
	w.send.drop = false
}

// maxElemsPerMessage keeps each element message well under netlink's
// 64 KiB attribute limit.
const maxElemsPerMessage = 128

// elements adds or deletes elements, grouped by set, in messages of
// bounded size.
func (w *Writer) elements(elems []ruleset.Element, defs map[string]ruleset.Set,
	op func(*nftables.Set, []nftables.SetElement) error) error {
	bySet := map[string][]nftables.SetElement{}
	var order []string
	for _, e := range elems {
		def, ok := defs[e.Set]
		if !ok {
			return fmt.Errorf("element of unknown set %s", e.Set)
		}
		ke := nftables.SetElement{Key: key(def.Key, e.Key)}
		if e.Verdict != nil {
			v, err := verdict(*e.Verdict)
			if err != nil {
				return err
			}
			ke.VerdictData = v
		}
		if _, seen := bySet[e.Set]; !seen {
			order = append(order, e.Set)
		}
		bySet[e.Set] = append(bySet[e.Set], ke)
	}
	for _, name := range order {
		ks := w.kernelSet(defs[name])
		for chunk := range slices.Chunk(bySet[name], maxElemsPerMessage) {
			if err := op(ks, chunk); err != nil {
				return fmt.Errorf("set %s elements: %w", name, err)
			}
		}
	}
	return nil
}

// nextID numbers the sets a batch creates, which the kernel wants unique
// within the batch. We number them rather than let the library do it, as
// its counter is shared by every connection in the process, unguarded.
func (w *Writer) nextID() uint32 {
	w.lastID++
	if w.lastID == 0 {
		w.lastID++
	}
	return w.lastID
}

func (w *Writer) kernelChain(c ruleset.Chain) *nftables.Chain {
	kc := &nftables.Chain{Name: c.Name, Table: w.table}
	if c.Hook == nil {
		return kc
	}
	hooks := map[string]*nftables.ChainHook{
		"prerouting": nftables.ChainHookPrerouting, "input": nftables.ChainHookInput,
		"forward": nftables.ChainHookForward, "output": nftables.ChainHookOutput,
		"postrouting": nftables.ChainHookPostrouting,
	}
	kc.Hooknum = hooks[c.Hook.Hook]
	kc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Hook.Priority))
	kc.Type = nftables.ChainType(c.Hook.Type)
	accept := nftables.ChainPolicyAccept
	kc.Policy = &accept
	return kc
}

func (w *Writer) kernelSet(s ruleset.Set) *nftables.Set {
	kt, concat := keyType(s.Key)
	ks := &nftables.Set{Table: w.table, Name: s.Name, KeyType: kt, Concatenation: concat}
	if s.Verdicts {
		ks.IsMap, ks.DataType = true, nftables.TypeVerdict
	}
	if s.Key == ruleset.KeyIndex {
		// So that nft shows the numbers as numgen makes them.
		ks.KeyByteOrder = binaryutil.NativeEndian
	}
	if s.Timeout > 0 {
		// nft's default size for sets that packets fill.
		ks.Dynamic, ks.HasTimeout, ks.Timeout, ks.Size = true, true, s.Timeout, 65535
	}
	return ks
}
