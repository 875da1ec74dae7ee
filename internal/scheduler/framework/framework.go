package framework

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// PluginFactory builds a plugin from its arguments (nil for defaults).
type PluginFactory func(args any, h Handle) (Plugin, error)

// Registry maps plugin names to factories.
type Registry map[string]PluginFactory

// WeightedPlugin is a score plugin with its weight.
type WeightedPlugin struct {
	Name   string
	Weight int64
}

// Profile says which plugins run at each extension point, in order.
type Profile struct {
	// SchedulerName is the spec.schedulerName this profile serves.
	SchedulerName string
	// Filters are run in order at PreFilter (those that have one) and at
	// Filter; the first rejection decides, so cheap checks go first.
	Filters []string
	// PostFilters run when no node fits.
	PostFilters []string
	// Scores are run at PreScore (those that have one) and Score.
	Scores []WeightedPlugin
	// PluginArgs are per-plugin arguments.
	PluginArgs map[string]any
}

// Options are the framework's dependencies.
type Options struct {
	Client          kubernetes.Interface
	NamespaceLabels func(namespace string) labels.Set
	Nominator       PodNominator
	Parallelism     int
	// Recorder records Events (preemption's "Preempted"); nil drops them.
	Recorder record.EventRecorder
}

// Framework runs one profile's plugins. It is the Handle plugins get.
type Framework struct {
	profile      Profile
	opts         Options
	parallelizer Parallelizer
	snapshot     SharedLister

	plugins     map[string]Plugin
	preFilters  []PreFilterPlugin
	filters     []FilterPlugin
	postFilters []PostFilterPlugin
	preScores   []PreScorePlugin
	scores      []ScorePlugin
	weights     map[string]int64
}

var _ Handle = (*Framework)(nil)

// New builds every plugin the profile names from reg.
func New(reg Registry, profile Profile, opts Options) (*Framework, error) {
	f := &Framework{profile: profile, opts: opts, parallelizer: NewParallelizer(opts.Parallelism), plugins: map[string]Plugin{}, weights: map[string]int64{}}
	get := func(name string) (Plugin, error) {
		if p, ok := f.plugins[name]; ok {
			return p, nil
		}
		factory, ok := reg[name]
		if !ok {
			return nil, fmt.Errorf("scheduler framework: plugin %q is not registered", name)
		}
		p, err := factory(profile.PluginArgs[name], f)
		if err != nil {
			return nil, fmt.Errorf("scheduler framework: plugin %q: %w", name, err)
		}
		f.plugins[name] = p
		return p, nil
	}
	for _, name := range profile.Filters {
		p, err := get(name)
		if err != nil {
			return nil, err
		}
		if pf, ok := p.(PreFilterPlugin); ok {
			f.preFilters = append(f.preFilters, pf)
		}
		fp, ok := p.(FilterPlugin)
		if !ok {
			return nil, fmt.Errorf("scheduler framework: %q is not a filter plugin", name)
		}
		f.filters = append(f.filters, fp)
	}
	for _, name := range profile.PostFilters {
		p, err := get(name)
		if err != nil {
			return nil, err
		}
		pf, ok := p.(PostFilterPlugin)
		if !ok {
			return nil, fmt.Errorf("scheduler framework: %q is not a post-filter plugin", name)
		}
		f.postFilters = append(f.postFilters, pf)
	}
	for _, w := range profile.Scores {
		p, err := get(w.Name)
		if err != nil {
			return nil, err
		}
		if ps, ok := p.(PreScorePlugin); ok {
			f.preScores = append(f.preScores, ps)
		}
		sp, ok := p.(ScorePlugin)
		if !ok {
			return nil, fmt.Errorf("scheduler framework: %q is not a score plugin", w.Name)
		}
		if w.Weight <= 0 {
			w.Weight = 1
		}
		f.scores = append(f.scores, sp)
		f.weights[w.Name] = w.Weight
	}
	return f, nil
}

// SetSnapshot sets the node snapshot for the next attempt.
func (f *Framework) SetSnapshot(s SharedLister) { f.snapshot = s }

// SnapshotSharedLister implements Handle.
func (f *Framework) SnapshotSharedLister() SharedLister { return f.snapshot }

// NamespaceLabels implements Handle.
func (f *Framework) NamespaceLabels(ns string) labels.Set {
	if f.opts.NamespaceLabels == nil {
		return nil
	}
	return f.opts.NamespaceLabels(ns)
}

// ClientSet implements Handle.
func (f *Framework) ClientSet() kubernetes.Interface { return f.opts.Client }

// EventRecorder implements Handle.
func (f *Framework) EventRecorder() record.EventRecorder {
	if f.opts.Recorder == nil {
		return &record.FakeRecorder{}
	}
	return f.opts.Recorder
}

// PodNominator implements Handle.
func (f *Framework) PodNominator() PodNominator { return f.opts.Nominator }

// SchedulerName implements Handle.
func (f *Framework) SchedulerName() string { return f.profile.SchedulerName }

// Parallelizer implements Handle.
func (f *Framework) Parallelizer() Parallelizer { return f.parallelizer }

// HasPostFilters reports whether any PostFilter plugin is configured.
func (f *Framework) HasPostFilters() bool { return len(f.postFilters) > 0 }

// HasScorePlugins reports whether any Score plugin is configured.
func (f *Framework) HasScorePlugins() bool { return len(f.scores) > 0 }

// RunPreFilterPlugins runs every PreFilter in order. A rejection names the
// plugin; the node sets of several results are intersected.
func (f *Framework) RunPreFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod) (*PreFilterResult, *Status) {
	var result *PreFilterResult
	for _, p := range f.preFilters {
		r, s := p.PreFilter(ctx, state, pod)
		if s.IsSkip() {
			state.SkipFilterPlugins[p.Name()] = true
			continue
		}
		if !s.IsSuccess() {
			if s.IsRejected() {
				return nil, s.WithPlugin(p.Name())
			}
			return nil, AsStatus(fmt.Errorf("running PreFilter plugin %q: %w", p.Name(), s.AsError())).WithPlugin(p.Name())
		}
		if r != nil && r.NodeNames != nil {
			if result == nil {
				result = &PreFilterResult{NodeNames: r.NodeNames}
			} else {
				both := map[string]struct{}{}
				for n := range r.NodeNames {
					if _, ok := result.NodeNames[n]; ok {
						both[n] = struct{}{}
					}
				}
				result.NodeNames = both
			}
		}
	}
	f.prepareFilters(state)
	return result, nil
}

// nominationCounter is a nominator that can tell cheaply whether any pod
// is nominated at all.
type nominationCounter interface {
	NumNominated() int
}

// prepareFilters fixes, once per attempt, which filters run and whether
// nominated pods need looking at: the per-node path then does neither.
func (f *Framework) prepareFilters(state *CycleState) {
	filters := make([]FilterPlugin, 0, len(f.filters))
	for _, p := range f.filters {
		if !state.SkipFilterPlugins[p.Name()] {
			filters = append(filters, p)
		}
	}
	state.filters = filters
	state.prepared = true
	state.noNominated = f.opts.Nominator == nil
	if c, ok := f.opts.Nominator.(nominationCounter); ok && c.NumNominated() == 0 {
		state.noNominated = true
	}
}

// RunPreFilterExtensionAddPod implements PluginsRunner.
func (f *Framework) RunPreFilterExtensionAddPod(ctx context.Context, state *CycleState, pod *corev1.Pod, add *PodInfo, ni *NodeInfo) *Status {
	for _, p := range f.preFilters {
		if state.SkipFilterPlugins[p.Name()] || p.PreFilterExtensions() == nil {
			continue
		}
		if s := p.PreFilterExtensions().AddPod(ctx, state, pod, add, ni); !s.IsSuccess() {
			return AsStatus(fmt.Errorf("running AddPod on PreFilter plugin %q: %w", p.Name(), s.AsError()))
		}
	}
	return nil
}

// RunPreFilterExtensionRemovePod implements PluginsRunner.
func (f *Framework) RunPreFilterExtensionRemovePod(ctx context.Context, state *CycleState, pod *corev1.Pod, remove *PodInfo, ni *NodeInfo) *Status {
	for _, p := range f.preFilters {
		if state.SkipFilterPlugins[p.Name()] || p.PreFilterExtensions() == nil {
			continue
		}
		if s := p.PreFilterExtensions().RemovePod(ctx, state, pod, remove, ni); !s.IsSuccess() {
			return AsStatus(fmt.Errorf("running RemovePod on PreFilter plugin %q: %w", p.Name(), s.AsError()))
		}
	}
	return nil
}

// RunFilterPlugins runs the filters on one node and returns the first
// rejection, naming its plugin.
func (f *Framework) RunFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, ni *NodeInfo) *Status {
	filters := f.filters
	if state.prepared {
		filters = state.filters
	}
	for _, p := range filters {
		if !state.prepared && state.SkipFilterPlugins[p.Name()] {
			continue
		}
		if s := p.Filter(ctx, state, pod, ni); !s.IsSuccess() {
			if !s.IsRejected() {
				s = AsStatus(fmt.Errorf("running Filter plugin %q: %w", p.Name(), s.AsError()))
			}
			return s.WithPlugin(p.Name())
		}
	}
	return nil
}

// RunFilterPluginsWithNominatedPods filters a node as if the pods
// nominated to it with at least this pod's priority were already there,
// so a preemptor's room is not taken by a lesser pod; and also without
// them, because a nominated pod might not arrive (upstream checks both, as
// pod affinity may need the nominated pods absent or present).
func (f *Framework) RunFilterPluginsWithNominatedPods(ctx context.Context, state *CycleState, pod *corev1.Pod, ni *NodeInfo) *Status {
	if state.noNominated {
		return f.RunFilterPlugins(ctx, state, pod, ni)
	}
	var nominated []*PodInfo
	if f.opts.Nominator != nil && ni.Node() != nil {
		for _, np := range f.opts.Nominator.NominatedPodsForNode(ni.Node().Name) {
			if np.Pod.UID != pod.UID && Priority(np.Pod) >= Priority(pod) {
				nominated = append(nominated, np)
			}
		}
	}
	if len(nominated) > 0 {
		st, n := state.Clone(), ni.Clone()
		for _, np := range nominated {
			n.AddPodInfo(np)
			if s := f.RunPreFilterExtensionAddPod(ctx, st, pod, np, n); !s.IsSuccess() {
				return s
			}
		}
		if s := f.RunFilterPlugins(ctx, st, pod, n); !s.IsSuccess() {
			return s
		}
	}
	return f.RunFilterPlugins(ctx, state, pod, ni)
}

// RunPostFilterPlugins runs the PostFilters until one succeeds.
func (f *Framework) RunPostFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, filtered NodeToStatus) (*PostFilterResult, *Status) {
	var last *Status = NewStatus(Unschedulable)
	for _, p := range f.postFilters {
		r, s := p.PostFilter(ctx, state, pod, filtered)
		if s.IsSuccess() {
			return r, s
		}
		if !s.IsRejected() {
			return nil, s.WithPlugin(p.Name())
		}
		last = s.WithPlugin(p.Name())
	}
	return nil, last
}

// NodePluginScores is a node's weighted score summed over the plugins.
type NodePluginScores struct {
	Name       string
	TotalScore int64
}

// RunPreScorePlugins runs every PreScore; Skip excludes that plugin's
// Score for this attempt.
func (f *Framework) RunPreScorePlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) *Status {
	for _, p := range f.preScores {
		s := p.PreScore(ctx, state, pod, nodes)
		if s.IsSkip() {
			state.SkipScorePlugins[p.Name()] = true
			continue
		}
		if !s.IsSuccess() {
			return AsStatus(fmt.Errorf("running PreScore plugin %q: %w", p.Name(), s.AsError()))
		}
	}
	return nil
}

var scorePool sync.Pool

// RunScorePlugins scores every node with every plugin, normalises, applies
// weights and sums.
func (f *Framework) RunScorePlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) ([]NodePluginScores, *Status) {
	var active []ScorePlugin
	for _, p := range f.scores {
		if !state.SkipScorePlugins[p.Name()] {
			active = append(active, p)
		}
	}
	// The per-plugin score arrays are scratch, returned to a pool at the
	// end: at hundreds of nodes per attempt they were most of the
	// scheduler's garbage.
	scratch, _ := scorePool.Get().(*[]NodeScore)
	if scratch == nil {
		scratch = new([]NodeScore)
	}
	if cap(*scratch) < len(active)*len(nodes) {
		*scratch = make([]NodeScore, len(active)*len(nodes))
	}
	defer scorePool.Put(scratch)
	flatScores := (*scratch)[:len(active)*len(nodes)]
	byPlugin := make([][]NodeScore, len(active))
	for i := range active {
		byPlugin[i] = flatScores[i*len(nodes) : (i+1)*len(nodes) : (i+1)*len(nodes)]
	}
	errOnce := make(chan *Status, 1)
	f.parallelizer.Until(ctx, len(nodes), func(n int) {
		for i, p := range active {
			s, st := p.Score(ctx, state, pod, nodes[n])
			if !st.IsSuccess() {
				select {
				case errOnce <- AsStatus(fmt.Errorf("running Score plugin %q: %w", p.Name(), st.AsError())):
				default:
				}
				return
			}
			byPlugin[i][n] = NodeScore{Name: nodes[n].Node().Name, Score: s}
		}
	})
	select {
	case st := <-errOnce:
		return nil, st
	default:
	}
	out := make([]NodePluginScores, len(nodes))
	for n := range nodes {
		out[n] = NodePluginScores{Name: nodes[n].Node().Name}
	}
	for i, p := range active {
		if ext := p.ScoreExtensions(); ext != nil {
			if st := ext.NormalizeScore(ctx, state, pod, byPlugin[i]); !st.IsSuccess() {
				return nil, AsStatus(fmt.Errorf("normalising scores of plugin %q: %w", p.Name(), st.AsError()))
			}
		}
		w := f.weights[p.Name()]
		for n, ns := range byPlugin[i] {
			if ns.Score < MinNodeScore || ns.Score > MaxNodeScore {
				return nil, AsStatus(fmt.Errorf("plugin %q scored node %s %d, outside [%d, %d]", p.Name(), ns.Name, ns.Score, MinNodeScore, MaxNodeScore))
			}
			out[n].TotalScore += ns.Score * w
		}
	}
	return out, nil
}

// EventInterest reports whether plugin registered interest in ev. A
// plugin that registers nothing is interested in everything, so a pod is
// never stranded.
func (f *Framework) EventInterest(plugin string, ev ClusterEvent) bool {
	p, ok := f.plugins[plugin]
	if !ok {
		return true
	}
	ext, ok := p.(EnqueueExtensions)
	if !ok {
		return true
	}
	for _, r := range ext.EventsToRegister() {
		if r.Match(ev) {
			return true
		}
	}
	return false
}
