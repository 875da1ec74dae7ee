// Package imagelocality prefers nodes that already hold the pod's images,
// weighting an image by its size and discounting images present on most
// nodes (pulling those is not what spreads pods).
package imagelocality

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Name is the plugin's name.
const Name = "ImageLocality"

// Thresholds as upstream: images under 23 MB do not count; the score is
// full at 1000 MB per container.
const (
	mb                    int64 = 1024 * 1024
	minThreshold                = 23 * mb
	maxContainerThreshold       = 1000 * mb
)

// ImageLocality is the plugin.
type ImageLocality struct {
	h framework.Handle
}

var _ framework.ScorePlugin = (*ImageLocality)(nil)

// New builds the plugin.
func New(_ any, h framework.Handle) (framework.Plugin, error) { return &ImageLocality{h: h}, nil }

// Name implements framework.Plugin.
func (*ImageLocality) Name() string { return Name }

// Score implements framework.ScorePlugin.
func (p *ImageLocality) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	total := len(p.h.SnapshotSharedLister().List())
	if total == 0 || len(ni.ImageStates) == 0 {
		return 0, nil
	}
	var sum int64
	containers := append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range containers {
		if s, ok := ni.ImageStates[framework.NormalizeImageName(c.Image)]; ok {
			sum += int64(float64(s.Size) * float64(s.NumNodes) / float64(total))
		}
	}
	hi := maxContainerThreshold * int64(len(containers))
	switch {
	case sum < minThreshold:
		sum = minThreshold
	case sum > hi:
		sum = hi
	}
	return framework.MaxNodeScore * (sum - minThreshold) / (hi - minThreshold), nil
}

// ScoreExtensions implements framework.ScorePlugin: scores are already
// in range.
func (*ImageLocality) ScoreExtensions() framework.ScoreExtensions { return nil }
