package resource

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func testReplicaSet(mut func(*appsv1.ReplicaSet)) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec:       appsv1.ReplicaSetSpec{Selector: wlTestSelector(), Template: wlTestTemplate()},
	}
	mut(rs)
	return rs
}

func testDaemonSet(mut func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "kube-system"},
		Spec:       appsv1.DaemonSetSpec{Selector: wlTestSelector(), Template: wlTestTemplate()},
	}
	mut(ds)
	return ds
}

func testStatefulSet(mut func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec:       appsv1.StatefulSetSpec{Selector: wlTestSelector(), Template: wlTestTemplate(), ServiceName: "db"},
	}
	mut(s)
	return s
}

func TestSetsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		r     *Resource
		obj   runtime.Object
		check func(runtime.Object) bool
	}{
		{"replicaset replicas", ReplicaSets(), testReplicaSet(func(*appsv1.ReplicaSet) {}), func(o runtime.Object) bool {
			return *o.(*appsv1.ReplicaSet).Spec.Replicas == 1
		}},
		{"daemonset strategy", DaemonSets(), testDaemonSet(func(*appsv1.DaemonSet) {}), func(o runtime.Object) bool {
			s := o.(*appsv1.DaemonSet).Spec
			ru := s.UpdateStrategy.RollingUpdate
			return s.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && *ru.MaxUnavailable == intstr.FromInt32(1) &&
				*ru.MaxSurge == intstr.FromInt32(0) && *s.RevisionHistoryLimit == 10
		}},
		{"daemonset on delete", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType
		}), func(o runtime.Object) bool { return o.(*appsv1.DaemonSet).Spec.UpdateStrategy.RollingUpdate == nil }},
		{"statefulset", StatefulSets(), testStatefulSet(func(*appsv1.StatefulSet) {}), func(o runtime.Object) bool {
			s := o.(*appsv1.StatefulSet).Spec
			p := s.PersistentVolumeClaimRetentionPolicy
			return *s.Replicas == 1 && s.PodManagementPolicy == appsv1.OrderedReadyPodManagement &&
				s.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && *s.UpdateStrategy.RollingUpdate.Partition == 0 &&
				*s.RevisionHistoryLimit == 10 && p.WhenDeleted == appsv1.RetainPersistentVolumeClaimRetentionPolicyType &&
				p.WhenScaled == appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		}},
		{"statefulset explicit rolling without parameters", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		}), func(o runtime.Object) bool { return o.(*appsv1.StatefulSet).Spec.UpdateStrategy.RollingUpdate == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.r.Default(tt.obj)
			if !tt.check(tt.obj) {
				t.Errorf("unexpected defaults: %+v", tt.obj)
			}
		})
	}
}

func TestSetsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    *Resource
		obj  runtime.Object
		want []string
	}{
		{"rs valid", ReplicaSets(), testReplicaSet(func(*appsv1.ReplicaSet) {}), nil},
		{"rs negative replicas", ReplicaSets(), testReplicaSet(func(rs *appsv1.ReplicaSet) { rs.Spec.Replicas = ptr.To[int32](-2) }), []string{"spec.replicas"}},
		{"rs mismatch", ReplicaSets(), testReplicaSet(func(rs *appsv1.ReplicaSet) { rs.Spec.Template.Labels = nil }), []string{"spec.template.metadata.labels"}},
		{"rs bad selector", ReplicaSets(), testReplicaSet(func(rs *appsv1.ReplicaSet) {
			rs.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
		}), []string{"spec.selector.matchExpressions[0].operator"}},
		{"ds valid", DaemonSets(), testDaemonSet(func(*appsv1.DaemonSet) {}), nil},
		{"ds no selector", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Selector = nil }), []string{"spec.selector"}},
		{"ds surge and unavailable zero", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0))}
		}), []string{"spec.updateStrategy.rollingUpdate.maxUnavailable"}},
		{"ds surge only", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromString("10%"))}
		}), nil},
		{"ds bad strategy", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.UpdateStrategy.Type = "Sometimes" }), []string{"spec.updateStrategy.type"}},
		{"ds restart on failure", DaemonSets(), testDaemonSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		}), []string{"spec.template.spec.restartPolicy"}},
		{"sts valid", StatefulSets(), testStatefulSet(func(*appsv1.StatefulSet) {}), nil},
		{"sts parallel", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }), nil},
		{"sts bad policy", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Random" }), []string{"spec.podManagementPolicy"}},
		{"sts negative partition", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](-1)}
		}), []string{"spec.updateStrategy.rollingUpdate.partition"}},
		{"sts zero max unavailable", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptr.To(intstr.FromInt32(0))}
		}), []string{"spec.updateStrategy.rollingUpdate.maxUnavailable"}},
		{"sts on delete with rolling", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType, RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{}}
		}), []string{"spec.updateStrategy.rollingUpdate"}},
		{"sts bad retention", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Keep"}
		}), []string{"spec.persistentVolumeClaimRetentionPolicy.whenDeleted"}},
		{"sts duplicate claims", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			pvc := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}}
			s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{pvc, pvc}
		}), []string{"spec.volumeClaimTemplates", "spec.volumeClaimTemplates[1].metadata.name"}},
		{"sts claims not supported", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
		}), []string{"spec.volumeClaimTemplates"}},
		{"sts bad service", StatefulSets(), testStatefulSet(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "DB_svc" }), []string{"spec.serviceName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(tt.r, tt.obj), tt.want...)
		})
	}
}

func TestSetsValidateUpdate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    *Resource
		old  runtime.Object
		mut  func(runtime.Object)
		want []string
	}{
		{"rs scale", ReplicaSets(), testReplicaSet(func(*appsv1.ReplicaSet) {}), func(o runtime.Object) {
			o.(*appsv1.ReplicaSet).Spec.Replicas = ptr.To[int32](4)
		}, nil},
		{"rs selector", ReplicaSets(), testReplicaSet(func(*appsv1.ReplicaSet) {}), func(o runtime.Object) {
			o.(*appsv1.ReplicaSet).Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "x": "y"}}
			o.(*appsv1.ReplicaSet).Spec.Template.Labels["x"] = "y"
		}, []string{"spec.selector"}},
		{"ds selector", DaemonSets(), testDaemonSet(func(*appsv1.DaemonSet) {}), func(o runtime.Object) {
			o.(*appsv1.DaemonSet).Spec.Selector.MatchLabels = map[string]string{"app": "web", "v": "2"}
			o.(*appsv1.DaemonSet).Spec.Template.Labels["v"] = "2"
		}, []string{"spec.selector"}},
		{"sts mutable fields", StatefulSets(), testStatefulSet(func(*appsv1.StatefulSet) {}), func(o runtime.Object) {
			s := o.(*appsv1.StatefulSet)
			s.Spec.Replicas = ptr.To[int32](3)
			s.Spec.MinReadySeconds = 5
			s.Spec.Template.Spec.Containers[0].Image = "postgres:17"
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		}, nil},
		{"sts service name", StatefulSets(), testStatefulSet(func(*appsv1.StatefulSet) {}), func(o runtime.Object) {
			o.(*appsv1.StatefulSet).Spec.ServiceName = "other"
		}, []string{"spec"}},
		{"sts pod management", StatefulSets(), testStatefulSet(func(*appsv1.StatefulSet) {}), func(o runtime.Object) {
			o.(*appsv1.StatefulSet).Spec.PodManagementPolicy = appsv1.ParallelPodManagement
		}, []string{"spec"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.r.Default(tt.old)
			obj := tt.old.DeepCopyObject()
			tt.mut(obj)
			wlAssertFields(t, wlUpdate(tt.r, obj, tt.old), tt.want...)
		})
	}
}

func TestSetsRows(t *testing.T) {
	t.Parallel()
	rs := testReplicaSet(func(rs *appsv1.ReplicaSet) {
		rs.Spec.Replicas = ptr.To[int32](3)
		rs.Status = appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 1}
	})
	ds := testDaemonSet(func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
		ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 5, CurrentNumberScheduled: 4, NumberReady: 3, UpdatedNumberScheduled: 2, NumberAvailable: 1}
	})
	sts := testStatefulSet(func(s *appsv1.StatefulSet) {
		s.Spec.Replicas = ptr.To[int32](3)
		s.Status.ReadyReplicas = 2
	})
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "db-5c9", OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: ptr.To(true)}}},
		Revision:   4,
	}
	tests := []struct {
		name string
		r    *Resource
		obj  runtime.Object
		want []any
	}{
		{"replicaset", ReplicaSets(), rs, []any{"web-1", int64(3), int64(2), int64(1), "<unknown>", "web", "nginx:1.27", "app=web"}},
		{"daemonset", DaemonSets(), ds, []any{"agent", int64(5), int64(4), int64(3), int64(2), int64(1), "kubernetes.io/os=linux", "<unknown>", "web", "nginx:1.27", "app=web"}},
		{"statefulset", StatefulSets(), sts, []any{"db", "2/3", "<unknown>", "web", "nginx:1.27"}},
		{"controllerrevision", ControllerRevisions(), cr, []any{"db-5c9", "statefulset.apps/db", int64(4), "<unknown>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertRow(t, tt.r, tt.obj, tt.want)
		})
	}
}

func TestSetsScaleAndFields(t *testing.T) {
	t.Parallel()
	rs := testReplicaSet(func(rs *appsv1.ReplicaSet) { rs.Spec.Replicas = ptr.To[int32](2); rs.Status.Replicas = 1 })
	sts := testStatefulSet(func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr.To[int32](4); s.Status.Replicas = 3 })
	tests := []struct {
		name         string
		r            *Resource
		obj          runtime.Object
		spec, status int32
		selector     string
	}{
		{"replicaset", ReplicaSets(), rs, 2, 1, "app=web"},
		{"statefulset", StatefulSets(), sts, 4, 3, "app=web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.r.Scale
			if s.SpecReplicas(tt.obj) != tt.spec || s.StatusReplicas(tt.obj) != tt.status || s.Selector(tt.obj) != tt.selector {
				t.Errorf("scale = %d/%d %q, want %d/%d %q", s.SpecReplicas(tt.obj), s.StatusReplicas(tt.obj), s.Selector(tt.obj), tt.spec, tt.status, tt.selector)
			}
			s.SetReplicas(tt.obj, 7)
			if s.SpecReplicas(tt.obj) != 7 {
				t.Errorf("SetReplicas(7) left %d", s.SpecReplicas(tt.obj))
			}
		})
	}
	t.Run("replicaset status.replicas field", func(t *testing.T) {
		t.Parallel()
		if got := ReplicaSets().Fields(rs.DeepCopy()); got.String() != "status.replicas=1" {
			t.Errorf("fields = %v", got)
		}
	})
}

func TestControllerRevisionValidate(t *testing.T) {
	t.Parallel()
	base := func() *appsv1.ControllerRevision {
		return &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "default"},
			Data:       runtime.RawExtension{Raw: []byte(`{"spec":{}}`)},
			Revision:   1,
		}
	}
	r := ControllerRevisions()
	tests := []struct {
		name string
		errs func() []string
		want []string
	}{
		{"valid", func() []string { return wlFields(r.Validate(base())) }, nil},
		{"no data", func() []string { c := base(); c.Data = runtime.RawExtension{}; return wlFields(r.Validate(c)) }, []string{"data"}},
		{"negative revision", func() []string { c := base(); c.Revision = -1; return wlFields(r.Validate(c)) }, []string{"revision"}},
		{"renumbered", func() []string { c := base(); c.Revision = 9; return wlFields(r.ValidateUpdate(c, base())) }, nil},
		{"data changed", func() []string {
			c := base()
			c.Data.Raw = []byte(`{"spec":{"x":1}}`)
			return wlFields(r.ValidateUpdate(c, base()))
		}, []string{"data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.errs()
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Errorf("errors at %v, want %v", got, tt.want)
			}
		})
	}
}
