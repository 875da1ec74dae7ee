package scheduler

import (
	"context"
	"errors"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeaffinity"
	"github.com/skiffhq/skiff/internal/scheduler/queue"
)

// result is a scheduling decision.
type result struct {
	node string
	// evaluated and feasible count the nodes looked at and passed.
	evaluated, feasible int
}

// scheduleOne makes one attempt for a popped pod.
func (s *sched) scheduleOne(ctx context.Context, qpi *queue.QueuedPodInfo) {
	pod := qpi.Pod
	if pod.DeletionTimestamp != nil || s.cache.IsAssumed(pod) {
		s.queue.Done(pod.UID)
		return
	}
	cycle := s.queue.SchedulingCycle()
	state := framework.NewCycleState()
	res, err := s.schedulePod(ctx, state, pod)
	if err != nil {
		nominated := ""
		var fitErr *framework.FitError
		if errors.As(err, &fitErr) && fitErr.NumAllNodes > 0 && s.fwk.HasPostFilters() {
			r, st := s.fwk.RunPostFilterPlugins(ctx, state, pod, fitErr.Diagnosis.NodeToStatus)
			switch {
			case st.IsSuccess() && r != nil:
				nominated = r.NominatedNodeName
			case st.Code() == framework.Error:
				s.log.Error("preemption", "pod", pod.Namespace+"/"+pod.Name, "err", st.AsError())
			default:
				fitErr.Diagnosis.PostFilterMsg = st.Message()
			}
		}
		s.handleFailure(ctx, qpi, err, nominated, cycle)
		return
	}
	// Assume: the cache places the pod now so the next attempt sees it;
	// the API call follows in the background.
	assumed := pod.DeepCopy()
	assumed.Spec.NodeName = res.node
	api := *qpi.PodInfo
	api.Pod = assumed
	if err := s.cache.AssumePod(&api); err != nil {
		s.handleFailure(ctx, qpi, err, "", cycle)
		return
	}
	s.queue.Nominator().Delete(pod.UID)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.bindAndReport(ctx, qpi, assumed, cycle)
	}()
}

// schedulePod picks a node for pod, or returns a *framework.FitError
// saying why none fits.
func (s *sched) schedulePod(ctx context.Context, state *framework.CycleState, pod *corev1.Pod) (result, error) {
	s.cache.UpdateSnapshot(s.snapshot)
	s.fwk.SetSnapshot(s.snapshot)
	nodes := s.snapshot.List()
	diag := framework.Diagnosis{NodeToStatus: framework.NodeToStatus{}, UnschedulablePlugins: sets.New[string]()}
	if len(nodes) == 0 {
		return result{}, &framework.FitError{Pod: pod, Diagnosis: diag}
	}
	pre, st := s.fwk.RunPreFilterPlugins(ctx, state, pod)
	if !st.IsSuccess() {
		if !st.IsRejected() {
			return result{}, st.AsError()
		}
		for _, ni := range nodes {
			diag.NodeToStatus[ni.Node().Name] = st
		}
		diag.UnschedulablePlugins.Insert(st.Plugin())
		diag.PreFilterMsg = st.Message()
		return result{}, &framework.FitError{Pod: pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	// A pod that preemption nominated tries its node first: the room there
	// was made for it.
	if nom := pod.Status.NominatedNodeName; nom != "" {
		if ni := s.snapshot.Get(nom); ni != nil && s.fwk.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni).IsSuccess() {
			return result{node: nom, evaluated: 1, feasible: 1}, nil
		}
	}
	candidates := nodes
	if pre != nil {
		candidates = candidates[:0:0]
		for _, ni := range nodes {
			if _, ok := pre.NodeNames[ni.Node().Name]; ok {
				candidates = append(candidates, ni)
			}
		}
	}
	feasible, err := s.findNodesThatFit(ctx, state, pod, candidates, &diag)
	if err != nil {
		return result{}, err
	}
	if len(feasible) == 0 {
		if pre != nil {
			excluded := framework.NewStatus(framework.UnschedulableAndUnresolvable, "node(s) didn't satisfy plugin(s) [NodeAffinity]").WithPlugin(nodeaffinity.Name)
			diag.UnschedulablePlugins.Insert(nodeaffinity.Name)
			for _, ni := range nodes {
				if _, ok := pre.NodeNames[ni.Node().Name]; !ok {
					diag.NodeToStatus[ni.Node().Name] = excluded
				}
			}
		}
		return result{}, &framework.FitError{Pod: pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	if len(feasible) == 1 {
		return result{node: feasible[0].Node().Name, evaluated: len(nodes), feasible: 1}, nil
	}
	scores, err := s.prioritize(ctx, state, pod, feasible)
	if err != nil {
		return result{}, err
	}
	return result{node: s.selectHost(scores), evaluated: len(nodes), feasible: len(feasible)}, nil
}

// numFeasibleNodesToFind is upstream's adaptive cap: in a large cluster
// there is no point finding every feasible node to pick one; look at
// 50% − 1% per 125 nodes of them (at least 5%, at least 100 nodes).
func (s *sched) numFeasibleNodesToFind(n int) int {
	const minNodes = 100
	if n < minNodes || s.cfg.PercentageOfNodesToScore >= 100 {
		return n
	}
	pct := s.cfg.PercentageOfNodesToScore
	if pct <= 0 {
		pct = max(50-n/125, 5)
	}
	return max(n*pct/100, minNodes)
}

// findNodesThatFit filters nodes in parallel from a rotating start until
// enough are feasible, recording every rejection in diag.
func (s *sched) findNodesThatFit(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, nodes []*framework.NodeInfo, diag *framework.Diagnosis) ([]*framework.NodeInfo, error) {
	n := len(nodes)
	want := s.numFeasibleNodesToFind(n)
	feasible := make([]*framework.NodeInfo, want)
	// statuses is reused between attempts (only the loop's goroutine
	// filters); a fresh slice per attempt at 5,000 nodes was garbage the
	// collector then had to chase.
	if cap(s.statusBuf) < n {
		s.statusBuf = make([]*framework.Status, n)
	}
	statuses := s.statusBuf[:n]
	defer clear(statuses)
	var found atomic.Int32
	// done is checked per node, not only per chunk of work: chunks are
	// hundreds of nodes, and filtering a whole chunk past the point where
	// enough nodes were found was most of an attempt's cost.
	var done atomic.Bool
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := s.nextStart % n
	s.fwk.Parallelizer().Until(fctx, n, func(i int) {
		if done.Load() {
			return
		}
		idx := (start + i) % n
		st := s.fwk.RunFilterPluginsWithNominatedPods(fctx, state, pod, nodes[idx])
		if st.IsSuccess() {
			c := found.Add(1)
			if int(c) > want {
				return
			}
			feasible[c-1] = nodes[idx]
			if int(c) == want {
				done.Store(true)
				cancel()
			}
			return
		}
		statuses[idx] = st
	})
	nFeasible := min(int(found.Load()), want)
	processed := nFeasible
	for _, st := range statuses {
		if st == nil {
			continue
		}
		processed++
		if !st.IsRejected() {
			return nil, st.AsError()
		}
	}
	// The per-node reasons only matter when nothing fits (the event, the
	// diagnosis, preemption); filling a map with thousands of them on
	// every successful attempt was a tenth of the work.
	if nFeasible == 0 {
		for i, st := range statuses {
			if st != nil {
				diag.NodeToStatus[nodes[i].Node().Name] = st
				diag.UnschedulablePlugins.Insert(st.Plugin())
			}
		}
	}
	// The next attempt starts where this one stopped, so every node gets
	// its turn (approximately: workers stop at slightly different places).
	s.nextStart = (start + processed) % n
	out := feasible[:0]
	for _, ni := range feasible {
		if ni != nil {
			out = append(out, ni)
		}
	}
	return out, nil
}

// prioritize runs the score plugins over the feasible nodes.
func (s *sched) prioritize(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, nodes []*framework.NodeInfo) ([]framework.NodePluginScores, error) {
	if !s.fwk.HasScorePlugins() {
		out := make([]framework.NodePluginScores, len(nodes))
		for i, ni := range nodes {
			out[i] = framework.NodePluginScores{Name: ni.Node().Name, TotalScore: 1}
		}
		return out, nil
	}
	if st := s.fwk.RunPreScorePlugins(ctx, state, pod, nodes); !st.IsSuccess() {
		return nil, st.AsError()
	}
	scores, st := s.fwk.RunScorePlugins(ctx, state, pod, nodes)
	if !st.IsSuccess() {
		return nil, st.AsError()
	}
	return scores, nil
}

// selectHost returns the best node, breaking ties uniformly at random
// (reservoir sampling) with the seeded source.
func (s *sched) selectHost(scores []framework.NodePluginScores) string {
	best, ties := scores[0], 1
	for _, sc := range scores[1:] {
		switch {
		case sc.TotalScore > best.TotalScore:
			best, ties = sc, 1
		case sc.TotalScore == best.TotalScore:
			ties++
			if s.rng.Intn(ties) == 0 {
				best = sc
			}
		}
	}
	return best.Name
}
