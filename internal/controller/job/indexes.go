package job

import (
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// indexSet is a set of completion indexes.
type indexSet map[int]bool

// parseIndexes reads status.completedIndexes / failedIndexes ("0-2,5"),
// dropping indexes outside [0, completions) as a scaled-down Job has.
func parseIndexes(s string, completions int) indexSet {
	set := indexSet{}
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := a; i <= b && i < completions; i++ {
			set[i] = true
		}
	}
	return set
}

// String writes the set as upstream does: ascending, consecutive runs as
// ranges ("0-2,5").
func (s indexSet) String() string {
	ix := make([]int, 0, len(s))
	for i := range s {
		ix = append(ix, i)
	}
	slices.Sort(ix)
	var b strings.Builder
	for k := 0; k < len(ix); {
		j := k
		for j+1 < len(ix) && ix[j+1] == ix[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ix[k]))
		if j > k {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ix[j]))
		}
		k = j + 1
	}
	return b.String()
}

// podIndex is a pod's completion index, or -1 if it has none that parses.
func podIndex(pod *corev1.Pod) int {
	v, ok := pod.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = pod.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// indexFailures is how many times index has failed before pod, carried on
// each replacement pod so the count survives the failed pods' deletion.
func indexFailures(pod *corev1.Pod) int {
	n, err := strconv.Atoi(pod.Annotations[batchv1.JobIndexFailureCountAnnotation])
	if err != nil || n < 0 {
		return 0
	}
	return n
}
