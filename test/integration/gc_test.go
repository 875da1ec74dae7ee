package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/testutil"
)

// gcOwner creates a ConfigMap to own things.
func gcOwner(t *testing.T, c kubernetes.Interface, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(ns).Create(testCtx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create owner: %v", err)
	}
	return cm
}

// gcDependent creates a ConfigMap owned by owner.
func gcDependent(t *testing.T, c kubernetes.Interface, owner *corev1.ConfigMap, name string, block bool, finalizers ...string) {
	t.Helper()
	_, err := c.CoreV1().ConfigMaps(owner.Namespace).Create(testCtx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: name, Finalizers: finalizers,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, BlockOwnerDeletion: ptr(block)}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create dependent: %v", err)
	}
}

func gcGone(c kubernetes.Interface, ns, name string) bool {
	_, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func TestGarbageCollector(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client

	t.Run("background", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		owner := gcOwner(t, c, ns, "owner")
		for i := 0; i < 3; i++ {
			gcDependent(t, c, owner, fmt.Sprintf("dep-%d", i), false)
		}
		// A pod owned by the ConfigMap goes too: the collector spans kinds.
		pod := makePod("dep-pod").Obj()
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}}
		if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod: %v", err)
		}
		if err := c.CoreV1().ConfigMaps(ns).Delete(testCtx(t), "owner", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete owner: %v", err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool {
			_, err := c.CoreV1().Pods(ns).Get(context.Background(), "dep-pod", metav1.GetOptions{})
			return gcGone(c, ns, "dep-0") && gcGone(c, ns, "dep-1") && gcGone(c, ns, "dep-2") && apierrors.IsNotFound(err)
		}, "dependents deleted after their owner")
	})

	t.Run("another owner keeps it", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		a, b := gcOwner(t, c, ns, "a"), gcOwner(t, c, ns, "b")
		_, err := c.CoreV1().ConfigMaps(ns).Create(testCtx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared",
			OwnerReferences: []metav1.OwnerReference{
				{APIVersion: "v1", Kind: "ConfigMap", Name: a.Name, UID: a.UID},
				{APIVersion: "v1", Kind: "ConfigMap", Name: b.Name, UID: b.UID}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create shared: %v", err)
		}
		if err := c.CoreV1().ConfigMaps(ns).Delete(testCtx(t), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete a: %v", err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool {
			cm, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), "shared", metav1.GetOptions{})
			return err == nil && len(cm.OwnerReferences) == 1 && cm.OwnerReferences[0].UID == b.UID
		}, "shared keeps only its live owner")
	})

	t.Run("orphan", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		owner := gcOwner(t, c, ns, "owner")
		gcDependent(t, c, owner, "dep", true)
		orphan := metav1.DeletePropagationOrphan
		if err := c.CoreV1().ConfigMaps(ns).Delete(testCtx(t), "owner", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
			t.Fatalf("delete owner: %v", err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool { return gcGone(c, ns, "owner") }, "owner gone after orphaning")
		dep, err := c.CoreV1().ConfigMaps(ns).Get(testCtx(t), "dep", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("orphaned dependent: %v", err)
		}
		if len(dep.OwnerReferences) != 0 || dep.DeletionTimestamp != nil {
			t.Errorf("orphan still owned or deleting: %v %v", dep.OwnerReferences, dep.DeletionTimestamp)
		}
	})

	t.Run("foreground", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		owner := gcOwner(t, c, ns, "owner")
		// The held dependent cannot go until the test lets it, so the
		// owner must still be there, waiting, until then.
		gcDependent(t, c, owner, "held", true, "example.com/hold")
		gcDependent(t, c, owner, "free", true)
		fg := metav1.DeletePropagationForeground
		if err := c.CoreV1().ConfigMaps(ns).Delete(testCtx(t), "owner", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
			t.Fatalf("delete owner: %v", err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool {
			held, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), "held", metav1.GetOptions{})
			return err == nil && held.DeletionTimestamp != nil && gcGone(c, ns, "free")
		}, "dependents deleted")
		o, err := c.CoreV1().ConfigMaps(ns).Get(testCtx(t), "owner", metav1.GetOptions{})
		if err != nil || o.DeletionTimestamp == nil {
			t.Fatalf("owner should wait for its blocking dependent: %v %v", o, err)
		}
		held, _ := c.CoreV1().ConfigMaps(ns).Get(testCtx(t), "held", metav1.GetOptions{})
		held.Finalizers = nil
		if _, err := c.CoreV1().ConfigMaps(ns).Update(testCtx(t), held, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("release held: %v", err)
		}
		testutil.Eventually(t, 30*time.Second, func() bool { return gcGone(c, ns, "held") && gcGone(c, ns, "owner") },
			"owner deleted once its dependents are gone")
	})
}
