package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImageImportIntoRunningNode: `skiff image build` makes a tarball and
// `skiff image import` loads it into the running node, so a pod that must
// not pull (imagePullPolicy Never) runs it.
func TestImageImportIntoRunningNode(t *testing.T) {
	ns := namespace(t)
	const ref = "e2e.local/imported:1"
	tar := filepath.Join(t.TempDir(), "imported.tar")
	for _, args := range [][]string{
		{"image", "build", "busybox", "--tag", ref, "-o", tar},
		{"image", "import", "--data-dir", filepath.Join(cl.dir, "agent"), tar},
	} {
		out, err := exec.Command(cl.bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("skiff %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[1] == "import" && !strings.Contains(string(out), "imported "+ref) {
			t.Errorf("import output %q", out)
		}
	}
	c := corev1.Container{Name: "app", Image: ref, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", "echo from the imported image; exec sleep 3600"}}
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "imported"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
	})
	p := waitPod(t, ns, "imported", 60*time.Second, "running from the imported image", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning
	})
	if id := p.Status.ContainerStatuses[0].ImageID; id == "" {
		t.Errorf("no imageID in %+v", p.Status.ContainerStatuses[0])
	}
	eventually(t, 20*time.Second, "the container's output in its log", func() (bool, string) {
		out, err := kubectlErr(t, nil, "-n", ns, "logs", "imported")
		return err == nil && strings.Contains(out, "from the imported image"), out
	})
}
