// Package cache is the scheduler's in-memory picture of the cluster: nodes
// with the pods bound to them, plus the pods it has assumed onto a node
// but whose binding the API server has not yet confirmed. Each scheduling
// attempt reads an immutable Snapshot of it, refreshed incrementally.
package cache

import (
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// podState is one pod the cache holds.
type podState struct {
	pi      *framework.PodInfo
	assumed bool
}

// Cache is safe for concurrent use: informer handlers write, the
// scheduling loop snapshots, binding goroutines confirm or forget.
type Cache struct {
	mu    sync.Mutex
	nodes map[string]*framework.NodeInfo
	// order keeps nodes in the order they arrived, so snapshots (and with
	// them tie-breaking and the rotating start index) are deterministic.
	order  []string
	pods   map[types.UID]*podState
	images map[string]*imageState
	// dirty names the nodes changed since last, the snapshot last
	// updated; structural says a node came or went. With them, updating
	// that snapshot costs the changes, not the cluster size. Another
	// snapshot takes the full walk.
	dirty      map[string]struct{}
	structural bool
	last       *Snapshot
}

// resetDirty empties the dirty set. A map that grew large (the first
// snapshot, a relist) is replaced rather than cleared: ranging over a
// cleared map still walks its whole capacity, and the next update
// ranges over it every attempt.
func (c *Cache) resetDirty() {
	c.structural = false
	if len(c.dirty) > 64 {
		c.dirty = map[string]struct{}{}
		return
	}
	clear(c.dirty)
}

func (c *Cache) touch(name string, structural bool) {
	c.dirty[name] = struct{}{}
	c.structural = c.structural || structural
}

type imageState struct {
	size  int64
	nodes map[string]struct{}
}

// New makes an empty cache.
func New() *Cache {
	return &Cache{nodes: map[string]*framework.NodeInfo{}, pods: map[types.UID]*podState{}, images: map[string]*imageState{}, dirty: map[string]struct{}{}}
}

func (c *Cache) nodeInfo(name string) *framework.NodeInfo {
	ni, ok := c.nodes[name]
	if !ok {
		ni = framework.NewNodeInfo()
		c.nodes[name] = ni
		c.order = append(c.order, name)
		c.touch(name, true)
	}
	c.touch(name, false)
	return ni
}

// AddNode adds or replaces a node.
func (c *Cache) AddNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni := c.nodeInfo(node.Name)
	if old := ni.Node(); old != nil {
		c.removeImages(old)
	}
	c.addImages(node)
	// A Node object appearing changes which nodes snapshots list.
	c.touch(node.Name, ni.Node() == nil)
	ni.SetNode(node)
}

// UpdateNode replaces a node.
func (c *Cache) UpdateNode(node *corev1.Node) { c.AddNode(node) }

// RemoveNode drops a node. Its NodeInfo stays while pods remain, so their
// deletions still find them; snapshots leave it out.
func (c *Cache) RemoveNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ni, ok := c.nodes[node.Name]
	if !ok {
		return
	}
	if old := ni.Node(); old != nil {
		c.removeImages(old)
	}
	ni.RemoveNode()
	c.touch(node.Name, true)
	c.dropIfEmpty(node.Name)
}

func (c *Cache) dropIfEmpty(name string) {
	if ni := c.nodes[name]; ni != nil && ni.Node() == nil && len(ni.Pods) == 0 {
		delete(c.nodes, name)
		c.touch(name, true)
		c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == name })
	}
}

func (c *Cache) addImages(node *corev1.Node) {
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			name = framework.NormalizeImageName(name)
			s, ok := c.images[name]
			if !ok {
				s = &imageState{size: img.SizeBytes, nodes: map[string]struct{}{}}
				c.images[name] = s
			}
			s.nodes[node.Name] = struct{}{}
		}
	}
}

func (c *Cache) removeImages(node *corev1.Node) {
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			name = framework.NormalizeImageName(name)
			if s, ok := c.images[name]; ok {
				delete(s.nodes, node.Name)
				if len(s.nodes) == 0 {
					delete(c.images, name)
				}
			}
		}
	}
}

// AssumePod places a pod the scheduler chose a node for (pod.Spec.NodeName
// set) before the binding is confirmed, so the next decision sees it.
func (c *Cache) AssumePod(pi *framework.PodInfo) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pi.Pod.UID]; ok {
		return fmt.Errorf("pod %s/%s is already in the scheduler cache", pi.Pod.Namespace, pi.Pod.Name)
	}
	c.nodeInfo(pi.Pod.Spec.NodeName).AddPodInfo(pi)
	c.pods[pi.Pod.UID] = &podState{pi: pi, assumed: true}
	return nil
}

// ForgetPod undoes AssumePod after a failed binding.
func (c *Cache) ForgetPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.pods[pod.UID]; ok && s.assumed {
		c.removeLocked(s.pi.Pod)
	}
}

// IsAssumed reports whether the pod is assumed and not yet confirmed.
func (c *Cache) IsAssumed(pod *corev1.Pod) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.pods[pod.UID]
	return ok && s.assumed
}

// AddPod records a pod the API server shows bound; it confirms an assumed
// pod (moving it if it was bound elsewhere after all).
func (c *Cache) AddPod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pods[pod.UID]; ok {
		c.removeLocked(c.pods[pod.UID].pi.Pod)
	}
	pi := framework.NewPodInfo(pod)
	c.nodeInfo(pod.Spec.NodeName).AddPodInfo(pi)
	c.pods[pod.UID] = &podState{pi: pi}
}

// UpdatePod replaces a bound pod.
func (c *Cache) UpdatePod(_, pod *corev1.Pod) { c.AddPod(pod) }

// RemovePod forgets a bound pod.
func (c *Cache) RemovePod(pod *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.pods[pod.UID]; ok {
		c.removeLocked(s.pi.Pod)
	}
}

func (c *Cache) removeLocked(pod *corev1.Pod) {
	delete(c.pods, pod.UID)
	if ni, ok := c.nodes[pod.Spec.NodeName]; ok {
		ni.RemovePod(pod)
		c.touch(pod.Spec.NodeName, false)
		c.dropIfEmpty(pod.Spec.NodeName)
	}
}

// PodCount returns how many pods the cache holds (tests, metrics).
func (c *Cache) PodCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pods)
}

// Snapshot is an immutable copy of the cache for one scheduling attempt.
// It implements framework.SharedLister.
type Snapshot struct {
	infos    map[string]*framework.NodeInfo
	list     []*framework.NodeInfo
	affinity []*framework.NodeInfo
	antiAff  []*framework.NodeInfo
	// pos is each node's index in list, affinity and antiAff (-1: absent).
	pos        map[string][3]int
	generation int64
	// pods indexes the pods by namespace; labels caches LabelValues and
	// is dropped whenever a Node object changes.
	pods   podIndex
	labels map[string]framework.LabelCount
}

var _ framework.SharedLister = (*Snapshot)(nil)

// NewSnapshot makes an empty snapshot to update.
func NewSnapshot() *Snapshot { return &Snapshot{infos: map[string]*framework.NodeInfo{}} }

// List implements framework.SharedLister.
func (s *Snapshot) List() []*framework.NodeInfo { return s.list }

// HavePodsWithAffinityList implements framework.SharedLister.
func (s *Snapshot) HavePodsWithAffinityList() []*framework.NodeInfo { return s.affinity }

// HavePodsWithRequiredAntiAffinityList implements framework.SharedLister.
func (s *Snapshot) HavePodsWithRequiredAntiAffinityList() []*framework.NodeInfo { return s.antiAff }

// Get implements framework.SharedLister.
func (s *Snapshot) Get(name string) *framework.NodeInfo {
	ni := s.infos[name]
	if ni == nil || ni.Node() == nil {
		return nil
	}
	return ni
}

// UpdateSnapshot copies into s the nodes that changed since s was last
// updated; unchanged nodes are shared, never copied.
func (c *Cache) UpdateSnapshot(s *Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != c.last || s.list == nil {
		c.fullUpdate(s)
		c.last = s
		c.resetDirty()
		return
	}
	rebuild := c.structural
	// The pod index is patched node by node: first every changed node's
	// old copy leaves, then every new copy enters, so a pod that moved
	// between two changed nodes ends on the right one.
	var olds, news []*framework.NodeInfo
	defer func() {
		for _, ni := range olds {
			s.pods.remove(ni)
		}
		for _, ni := range news {
			s.pods.add(ni)
		}
	}()
	for name := range c.dirty {
		ni, ok := c.nodes[name]
		old := s.infos[name]
		olds = append(olds, old)
		if !ok {
			delete(s.infos, name)
			s.labels = nil
			rebuild = true
			continue
		}
		cp := c.clone(ni)
		news = append(news, cp)
		if old == nil {
			rebuild = true
		}
		if old == nil || old.Node() != cp.Node() {
			s.labels = nil
		}
		s.infos[name] = cp
		s.generation = max(s.generation, ni.Generation)
		if !rebuild {
			s.replace(name, cp)
		}
	}
	c.resetDirty()
	if rebuild {
		c.rebuildLists(s)
	}
}

// fullUpdate walks every node, comparing generations.
func (c *Cache) fullUpdate(s *Snapshot) {
	for name, ni := range c.nodes {
		if ni.Generation > s.generation || s.infos[name] == nil {
			s.infos[name] = c.clone(ni)
			s.generation = max(s.generation, ni.Generation)
		}
	}
	for name := range s.infos {
		if _, ok := c.nodes[name]; !ok {
			delete(s.infos, name)
		}
	}
	s.pods, s.labels = podIndex{}, nil
	for _, ni := range s.infos {
		s.pods.add(ni)
	}
	c.rebuildLists(s)
}

func (c *Cache) clone(ni *framework.NodeInfo) *framework.NodeInfo {
	cp := ni.Clone()
	if node := cp.Node(); node != nil {
		cp.ImageStates = c.imageSummaries(node)
	}
	return cp
}

// rebuildLists lists the snapshot's nodes in arrival order.
func (c *Cache) rebuildLists(s *Snapshot) {
	s.list, s.affinity, s.antiAff = s.list[:0:0], nil, nil
	s.pos = make(map[string][3]int, len(c.order))
	for _, name := range c.order {
		ni := s.infos[name]
		if ni == nil || ni.Node() == nil {
			continue
		}
		pos := [3]int{len(s.list), -1, -1}
		s.list = append(s.list, ni)
		if len(ni.PodsWithAffinity) > 0 {
			pos[1] = len(s.affinity)
			s.affinity = append(s.affinity, ni)
		}
		if len(ni.PodsWithRequiredAntiAffinity) > 0 {
			pos[2] = len(s.antiAff)
			s.antiAff = append(s.antiAff, ni)
		}
		s.pos[name] = pos
	}
}

// replace swaps a changed node's copy into the lists in place, adding it
// to or dropping it from the affinity lists when that changed.
func (s *Snapshot) replace(name string, ni *framework.NodeInfo) {
	pos, ok := s.pos[name]
	if !ok {
		return
	}
	s.list[pos[0]] = ni
	pos[1] = s.place(&s.affinity, pos[1], ni, len(ni.PodsWithAffinity) > 0, 1)
	pos[2] = s.place(&s.antiAff, pos[2], ni, len(ni.PodsWithRequiredAntiAffinity) > 0, 2)
	s.pos[name] = pos
}

// place keeps ni in *list (at index i, -1 when absent) iff want; removal
// swaps the last entry in and fixes its index (slot k of pos).
func (s *Snapshot) place(list *[]*framework.NodeInfo, i int, ni *framework.NodeInfo, want bool, k int) int {
	switch {
	case want && i >= 0:
		(*list)[i] = ni
		return i
	case want:
		*list = append(*list, ni)
		return len(*list) - 1
	case i >= 0:
		last := len(*list) - 1
		moved := (*list)[last]
		(*list)[i] = moved
		*list = (*list)[:last]
		if i != last {
			p := s.pos[moved.Node().Name]
			p[k] = i
			s.pos[moved.Node().Name] = p
		}
	}
	return -1
}

func (c *Cache) imageSummaries(node *corev1.Node) map[string]*framework.ImageStateSummary {
	out := map[string]*framework.ImageStateSummary{}
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			name = framework.NormalizeImageName(name)
			if st, ok := c.images[name]; ok {
				out[name] = &framework.ImageStateSummary{Size: st.size, NumNodes: len(st.nodes)}
			}
		}
	}
	return out
}
