package resource

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestLeaseValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec coordinationv1.LeaseSpec
		want []string
	}{
		{"empty", coordinationv1.LeaseSpec{}, nil},
		{"held", coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1"), LeaseDurationSeconds: ptr.To[int32](40), LeaseTransitions: ptr.To[int32](0)}, nil},
		{"zero duration", coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](0)}, []string{"spec.leaseDurationSeconds"}},
		{"negative transitions", coordinationv1.LeaseSpec{LeaseTransitions: ptr.To[int32](-1)}, []string{"spec.leaseTransitions"}},
		{"known strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.OldestEmulationVersion), PreferredHolder: ptr.To("a")}, nil},
		{"custom strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.CoordinatedLeaseStrategy("example.com/newest"))}, nil},
		{"unknown strategy", coordinationv1.LeaseSpec{Strategy: ptr.To(coordinationv1.CoordinatedLeaseStrategy("Newest"))}, []string{"spec.strategy"}},
		{"preferred without strategy", coordinationv1.LeaseSpec{PreferredHolder: ptr.To("a")}, []string{"spec.preferredHolder"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "kube-node-lease"}, Spec: tt.spec}
			wlAssertFields(t, Leases().Validate(l), tt.want...)
			wlAssertFields(t, Leases().ValidateUpdate(l, l.DeepCopy()), tt.want...)
		})
	}
}

func TestLeaseRow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		holder *string
		want   string
	}{
		{"held", ptr.To("node-1"), "node-1"},
		{"free", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: tt.holder}}
			wlAssertRow(t, Leases(), l, []any{"l", tt.want, "<unknown>"})
		})
	}
}
