// Package integration runs a real control plane in the test process and
// drives it with client-go and the embedded kubectl.
package integration

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/testutil"
)

func TestSystemNamespacesExist(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if _, err := cp.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err != nil {
			t.Errorf("namespace %s: %v", ns, err)
		}
	}
}
