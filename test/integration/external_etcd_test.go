package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestExternalEtcd runs the server against an etcd it does not embed
// (--etcd-endpoints) and checks that objects land there and outlive the
// server.
func TestExternalEtcd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e, err := etcd.New(etcd.Config{
		DataDir:         filepath.Join(dir, "external-etcd"),
		ListenClientURL: fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)),
		ListenPeerURL:   fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)),
		Logger:          testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	cp := testutil.StartControlPlane(t, func(c *server.Config) { c.EtcdEndpoints = e.Endpoints() })
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	if _, err := cp.Client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	cp.Stop()

	// The object is in the external etcd under the documented key.
	resp, err := e.Client().Get(ctx, "/registry/core/configmaps/default/kept")
	if err != nil {
		t.Fatalf("etcd get: %v", err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("configmap not stored in the external etcd: %d keys", len(resp.Kvs))
	}
	// The server kept no etcd of its own.
	if matches, _ := filepath.Glob(filepath.Join(cp.DataDir, "etcd")); len(matches) != 0 {
		t.Errorf("server created an embedded etcd data dir %v although --etcd-endpoints was set", matches)
	}
}
