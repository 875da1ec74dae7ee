package downward

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestField(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "web", Namespace: "shop", UID: "u1",
		Labels:      map[string]string{"app": "web", "tier": "front"},
		Annotations: map[string]string{"note": `say "hi"`},
	}}
	tests := []struct {
		path   string
		want   string
		wantOK bool
	}{
		{"metadata.name", "web", true},
		{"metadata.namespace", "shop", true},
		{"metadata.uid", "u1", true},
		{"metadata.labels", "app=\"web\"\ntier=\"front\"", true},
		{"metadata.annotations", `note="say \"hi\""`, true},
		{"metadata.labels['tier']", "front", true},
		{"metadata.labels['missing']", "", true},
		{"metadata.annotations['note']", `say "hi"`, true},
		{"metadata.name['x']", "", false},
		{"spec.nodeName", "", false},
		{"metadata.labels['unclosed", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := Field(pod, tt.path)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Field(%q) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
