package resource

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

func testDeployment(mut ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       appsv1.DeploymentSpec{Selector: wlTestSelector(), Template: wlTestTemplate()},
	}
	for _, m := range mut {
		m(d)
	}
	return d
}

func TestDeploymentDefaults(t *testing.T) {
	t.Parallel()
	quarter := intstr.FromString("25%")
	tests := []struct {
		name string
		in   *appsv1.Deployment
		want appsv1.DeploymentSpec
	}{
		{
			name: "empty",
			in:   testDeployment(),
			want: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Strategy: appsv1.DeploymentStrategy{
					Type:          appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &quarter, MaxSurge: &quarter},
				},
				RevisionHistoryLimit:    ptr.To[int32](10),
				ProgressDeadlineSeconds: ptr.To[int32](600),
			},
		},
		{
			name: "recreate keeps no rolling parameters",
			in: testDeployment(func(d *appsv1.Deployment) {
				d.Spec.Replicas = ptr.To[int32](0)
				d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
				d.Spec.RevisionHistoryLimit = ptr.To[int32](2)
			}),
			want: appsv1.DeploymentSpec{
				Replicas:                ptr.To[int32](0),
				Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				RevisionHistoryLimit:    ptr.To[int32](2),
				ProgressDeadlineSeconds: ptr.To[int32](600),
			},
		},
		{
			name: "explicit surge kept",
			in: testDeployment(func(d *appsv1.Deployment) {
				d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(3))}
			}),
			want: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Strategy: appsv1.DeploymentStrategy{
					Type:          appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &quarter, MaxSurge: ptr.To(intstr.FromInt32(3))},
				},
				RevisionHistoryLimit:    ptr.To[int32](10),
				ProgressDeadlineSeconds: ptr.To[int32](600),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			Deployments().Default(tt.in)
			got := tt.in.Spec
			if got.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
				t.Errorf("template not defaulted: restartPolicy %q", got.Template.Spec.RestartPolicy)
			}
			got.Selector, got.Template = nil, corev1.PodTemplateSpec{}
			if !apiequality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("spec = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDeploymentValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*appsv1.Deployment)
		want []string
	}{
		{"valid", func(*appsv1.Deployment) {}, nil},
		{"zero replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](0) }, nil},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](-1) }, []string{"spec.replicas"}},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, []string{"spec.selector"}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, []string{"spec.selector"}},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels["app"] = "db" }, []string{"spec.template.metadata.labels"}},
		{"restart never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }, []string{"spec.template.spec.restartPolicy"}},
		{"deadline", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](5) }, []string{"spec.template.spec.activeDeadlineSeconds"}},
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromString("0%"))}
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable"}},
		{"over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromString("101%"))}
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable"}},
		{"bad percent", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromString("ten"))}
		}, []string{"spec.strategy.rollingUpdate.maxSurge"}},
		{"negative surge", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptr.To(intstr.FromInt32(-1))}
		}, []string{"spec.strategy.rollingUpdate.maxSurge"}},
		{"recreate with rolling", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
		}, []string{"spec.strategy.rollingUpdate"}},
		{"unknown strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, []string{"spec.strategy.type"}},
		{"deadline not above minReady", func(d *appsv1.Deployment) {
			d.Spec.MinReadySeconds = 30
			d.Spec.ProgressDeadlineSeconds = ptr.To[int32](30)
		}, []string{"spec.progressDeadlineSeconds"}},
		{"negative history", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr.To[int32](-1) }, []string{"spec.revisionHistoryLimit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(Deployments(), testDeployment(tt.mut)), tt.want...)
		})
	}
}

func TestDeploymentValidateUpdate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*appsv1.Deployment)
		want []string
	}{
		{"scale and new image", func(d *appsv1.Deployment) {
			d.Spec.Replicas = ptr.To[int32](5)
			d.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		}, nil},
		{"selector changed", func(d *appsv1.Deployment) {
			d.Spec.Selector.MatchLabels["tier"] = "front"
			d.Spec.Template.Labels["tier"] = "front"
		}, []string{"spec.selector"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Deployments()
			old := testDeployment()
			r.Default(old)
			obj := old.DeepCopy()
			tt.mut(obj)
			wlAssertFields(t, wlUpdate(r, obj, old), tt.want...)
		})
	}
}

func TestDeploymentCreateResetsStatus(t *testing.T) {
	t.Parallel()
	d := testDeployment(func(d *appsv1.Deployment) { d.Status.Replicas = 7 })
	if errs := wlCreate(Deployments(), d); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	if d.Status.Replicas != 0 {
		t.Errorf("status survived create: %+v", d.Status)
	}
}

func TestDeploymentRowAndScale(t *testing.T) {
	t.Parallel()
	r := Deployments()
	d := testDeployment(func(d *appsv1.Deployment) {
		d.Spec.Replicas = ptr.To[int32](3)
		d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: "log", Image: "busybox"})
		d.Status = appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 1}
	})
	wlAssertRow(t, r, d, []any{"web", "2/3", int64(3), int64(1), "<unknown>", "web,log", "nginx:1.27,busybox", "app=web,tier"})

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"spec replicas", r.Scale.SpecReplicas(d), int32(3)},
		{"status replicas", r.Scale.StatusReplicas(d), int32(3)},
		{"selector", r.Scale.Selector(d), "app=web,tier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
	r.Scale.SetReplicas(d, 9)
	if *d.Spec.Replicas != 9 {
		t.Errorf("SetReplicas: replicas = %d, want 9", *d.Spec.Replicas)
	}
}

// The "both zero" rule must name the field, so the error reads well.
func TestDeploymentSurgeErrorType(t *testing.T) {
	t.Parallel()
	d := testDeployment(func(d *appsv1.Deployment) {
		d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(0))}
	})
	wlAssertHas(t, wlCreate(Deployments(), d), field.ErrorTypeInvalid, "spec.strategy.rollingUpdate.maxUnavailable")
}
