package integration

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/testutil"
)

func TestDefaultServiceAccount(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	has := func() bool {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	}
	testutil.Eventually(t, 30*time.Second, has, "default ServiceAccount in %s", ns)
	if err := c.CoreV1().ServiceAccounts(ns).Delete(testCtx(t), "default", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, has, "default ServiceAccount recreated in %s", ns)
	for _, sys := range []string{"default", "kube-system"} {
		if _, err := c.CoreV1().ServiceAccounts(sys).Get(testCtx(t), "default", metav1.GetOptions{}); err != nil {
			t.Errorf("no default ServiceAccount in %s: %v", sys, err)
		}
	}
}
