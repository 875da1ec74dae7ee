package queue

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Nominator remembers which node preemption freed for which pod, so that
// until the pod is bound, lesser pods do not take the room.
type Nominator struct {
	mu     sync.RWMutex
	byNode map[string][]*framework.PodInfo
	byPod  map[types.UID]string
}

var _ framework.PodNominator = (*Nominator)(nil)

// NewNominator makes an empty nominator.
func NewNominator() *Nominator {
	return &Nominator{byNode: map[string][]*framework.PodInfo{}, byPod: map[types.UID]string{}}
}

// Add nominates node for the pod, replacing an earlier nomination; an
// empty node name only removes.
func (n *Nominator) Add(pi *framework.PodInfo, node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleteLocked(pi.Pod.UID)
	if node == "" {
		return
	}
	n.byPod[pi.Pod.UID] = node
	n.byNode[node] = append(n.byNode[node], pi)
}

// Delete drops the pod's nomination.
func (n *Nominator) Delete(uid types.UID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleteLocked(uid)
}

func (n *Nominator) deleteLocked(uid types.UID) {
	node, ok := n.byPod[uid]
	if !ok {
		return
	}
	delete(n.byPod, uid)
	list := n.byNode[node]
	for i, pi := range list {
		if pi.Pod.UID == uid {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(n.byNode, node)
	} else {
		n.byNode[node] = list
	}
}

// NominatedPodsForNode implements framework.PodNominator.
func (n *Nominator) NominatedPodsForNode(node string) []*framework.PodInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return append([]*framework.PodInfo(nil), n.byNode[node]...)
}

// NumNominated returns how many pods hold a nomination; the framework
// skips looking nominated pods up per node when there are none.
func (n *Nominator) NumNominated() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.byPod)
}
