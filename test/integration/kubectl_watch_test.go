package integration

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlWatch: `get -w` streams rows for changes made by another
// client while it runs.
func TestKubectlWatch(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	k := newCLI(t, cp)
	c := cp.Client

	t.Run("configmaps", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		ctx := testCtx(t)
		// A first object makes kubectl print a row once its list is done;
		// the watch then starts from that list's resourceVersion, so no
		// later change can slip between the two.
		mkCM(t, c, ns, "seed", map[string]string{"a": "1"})
		w := k.in(t).start("get", "cm", "-w", "-n", ns)
		w.waitLine(t, "seed", "1")

		cm := mkCM(t, c, ns, "fresh", map[string]string{"a": "1"})
		w.waitLine(t, "fresh", "1")
		cm.Data["b"], cm.Data["c"] = "2", "3"
		if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		w.waitLine(t, "fresh", "3")
	})

	t.Run("pods with events", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		ctx := testCtx(t)
		if _, err := c.CoreV1().Pods(ns).Create(ctx, makePod("seed").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w := k.in(t).start("get", "pods", "-w", "--output-watch-events", "-n", ns)
		w.waitLine(t, "EVENT", "NAME", "READY", "STATUS")
		w.waitLine(t, "ADDED", "seed", "0/1", "Pending")

		if _, err := c.CoreV1().Pods(ns).Create(ctx, makePod("later").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w.waitLine(t, "ADDED", "later", "0/1", "Pending")
		if _, err := c.CoreV1().Pods(ns).Patch(ctx, "later", "application/merge-patch+json",
			[]byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		w.waitLine(t, "MODIFIED", "later")
		// Unscheduled pods go at once, without a grace period.
		if err := c.CoreV1().Pods(ns).Delete(ctx, "later", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		w.waitLine(t, "DELETED", "later")
	})
}

// mkCM creates a config map with data through client-go.
func mkCM(t *testing.T, c kubernetes.Interface, ns, name string, data map[string]string) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(ns).Create(testCtx(t), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}
