package integration

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// apiEndpoints lists "IP:port" of every address in Endpoints
// default/kubernetes, sorted.
func apiEndpoints(c kubernetes.Interface) []string {
	ep, err := c.CoreV1().Endpoints("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			for _, p := range ss.Ports {
				out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestAPIServerEndpoints runs two API servers on one etcd and checks that
// the `kubernetes` Service lists both, then only the live ones: a server
// that stops leaves at once, and one that dies (a Lease no longer
// renewed) drops out when its Lease expires.
func TestAPIServerEndpoints(t *testing.T) {
	t.Parallel()
	etcdPort := testutil.FreePort(t)
	lease := func(c *server.Config) {
		c.APIServerLeaseDuration = 3 * time.Second
		c.Disable = append(c.Disable, "controller-manager", "scheduler")
	}
	cp1 := testutil.StartControlPlane(t, lease, func(c *server.Config) { c.EtcdClientPort = etcdPort })
	cp2 := testutil.StartControlPlane(t, lease, func(c *server.Config) {
		c.EtcdEndpoints = []string{fmt.Sprintf("http://127.0.0.1:%d", etcdPort)}
		c.AdvertiseAddress = "127.0.0.2"
	})
	_, port1, _ := net.SplitHostPort(cp1.Server().Addr())
	_, port2, _ := net.SplitHostPort(cp2.Server().Addr())
	self1, self2 := "127.0.0.1:"+port1, "127.0.0.2:"+port2
	c := cp1.Client

	testutil.Eventually(t, 10*time.Second, func() bool {
		got := apiEndpoints(c)
		return slices.Contains(got, self1) && slices.Contains(got, self2) && len(got) == 2
	}, "kubernetes endpoints list both servers; have %v", apiEndpoints(c))
	// Both servers agree: the second sees the same through its own API.
	if got, want := apiEndpoints(cp2.Client), apiEndpoints(c); !slices.Equal(got, want) {
		t.Errorf("second server sees %v, first %v", got, want)
	}
	leases, err := c.CoordinationV1().Leases("kube-system").List(testCtx(t), metav1.ListOptions{LabelSelector: server.APIServerLabel + "=true"})
	if err != nil || len(leases.Items) != 2 {
		t.Fatalf("apiserver leases: %v %v", leases, err)
	}

	// A clean stop takes the server out at once and deletes its Lease.
	cp2.Stop()
	if got := apiEndpoints(c); !slices.Equal(got, []string{self1}) {
		t.Errorf("after the second server stopped, endpoints = %v, want [%s]", got, self1)
	}
	leases, err = c.CoordinationV1().Leases("kube-system").List(testCtx(t), metav1.ListOptions{LabelSelector: server.APIServerLabel + "=true"})
	if err != nil || len(leases.Items) != 1 {
		t.Errorf("apiserver leases after stop: %d %v", len(leases.Items), err)
	}

	// A server that dies leaves a Lease nobody renews: it is listed while
	// its Lease lives and dropped once it expires.
	now := metav1.NewMicroTime(time.Now())
	ghost := "127.0.0.9:" + port1
	if _, err := c.CoordinationV1().Leases("kube-system").Create(testCtx(t), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff-apiserver-ghost", Labels: map[string]string{server.APIServerLabel: "true"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &ghost, LeaseDurationSeconds: ptr(int32(2)), RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return slices.Contains(apiEndpoints(c), ghost) }, "live lease listed")
	testutil.Eventually(t, 10*time.Second, func() bool {
		return slices.Equal(apiEndpoints(c), []string{self1})
	}, "expired lease dropped; have %v", apiEndpoints(c))
	if since := time.Since(now.Time); since < 2*time.Second {
		t.Errorf("dropped after %v, before its lease expired", since)
	}
}
