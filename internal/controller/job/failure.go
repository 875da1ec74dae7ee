package job

import (
	"fmt"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// backoffRecord is what the retry back-off of one Job depends on: failures
// since its last success and when the latest was seen. It lives in memory,
// as upstream's does: after a restart retries start without delay.
type backoffRecord struct {
	failures int
	last     time.Time
}

// backoffStore holds the back-off records of all Jobs.
type backoffStore struct {
	mu sync.Mutex
	m  map[string]backoffRecord
}

func newBackoffStore() *backoffStore { return &backoffStore{m: map[string]backoffRecord{}} }

// record notes the pods a sync has just seen finish. A success resets the
// count: back-off punishes consecutive failures, not a Job's history.
func (b *backoffStore) record(key string, now time.Time, succeeded, failed int) {
	if succeeded == 0 && failed == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.m[key]
	if succeeded > 0 {
		r.failures = 0
	}
	if failed > 0 {
		r.failures += failed
		r.last = now
	}
	b.m[key] = r
}

func (b *backoffStore) get(key string) backoffRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[key]
}

func (b *backoffStore) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
}

// retryWait is how much longer new pods must wait after r's failures:
// base·2^(failures−1), capped.
func retryWait(r backoffRecord, base, limit time.Duration, now time.Time) time.Duration {
	if r.failures == 0 {
		return 0
	}
	d := base
	for i := 1; i < r.failures && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return max(r.last.Add(d).Sub(now), 0)
}

// matchFailurePolicy returns the action of the first rule of policy that
// matches a failed pod, and upstream's message for it; nil when no rule
// matches (the failure counts, as with action Count).
func matchFailurePolicy(policy *batchv1.PodFailurePolicy, pod *corev1.Pod) (*batchv1.PodFailurePolicyAction, string) {
	if policy == nil {
		return nil, ""
	}
	for i, rule := range policy.Rules {
		if ec := rule.OnExitCodes; ec != nil {
			if name, code, ok := matchExitCodes(ec, pod); ok {
				return &rule.Action, fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d",
					name, pod.Namespace, pod.Name, code, rule.Action, i)
			}
			continue
		}
		for _, want := range rule.OnPodConditions {
			for _, got := range pod.Status.Conditions {
				if got.Type == want.Type && got.Status == want.Status {
					return &rule.Action, fmt.Sprintf("Pod %s/%s has condition %s matching %s rule at index %d",
						pod.Namespace, pod.Name, want.Type, rule.Action, i)
				}
			}
		}
	}
	return nil, ""
}

// matchExitCodes finds a terminated container whose exit code the
// requirement selects. Exit code 0 never matches: a container that
// succeeded did not cause the failure.
func matchExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, pod *corev1.Pod) (string, int32, bool) {
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range statuses {
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 {
				continue
			}
			if req.ContainerName != nil && *req.ContainerName != cs.Name {
				continue
			}
			in := slices.Contains(req.Values, t.ExitCode)
			if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
				return cs.Name, t.ExitCode, true
			}
		}
	}
	return "", 0, false
}
