package resource

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testCronJob(mut func(*batchv1.CronJob)) *batchv1.CronJob {
	tmpl := wlTestTemplate()
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "backup", Namespace: "default"},
		Spec: batchv1.CronJobSpec{
			Schedule:    "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}},
		},
	}
	mut(cj)
	return cj
}

func TestCronJobDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*batchv1.CronJob)
		want batchv1.CronJobSpec
	}{
		{"empty", func(*batchv1.CronJob) {}, batchv1.CronJobSpec{
			ConcurrencyPolicy: batchv1.AllowConcurrent, Suspend: ptr.To(false),
			SuccessfulJobsHistoryLimit: ptr.To[int32](3), FailedJobsHistoryLimit: ptr.To[int32](1),
		}},
		{"set values kept", func(cj *batchv1.CronJob) {
			cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
			cj.Spec.Suspend = ptr.To(true)
			cj.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](0)
		}, batchv1.CronJobSpec{
			ConcurrencyPolicy: batchv1.ForbidConcurrent, Suspend: ptr.To(true),
			SuccessfulJobsHistoryLimit: ptr.To[int32](0), FailedJobsHistoryLimit: ptr.To[int32](1),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cj := testCronJob(tt.mut)
			CronJobs().Default(cj)
			s := cj.Spec
			if s.ConcurrencyPolicy != tt.want.ConcurrencyPolicy || *s.Suspend != *tt.want.Suspend ||
				*s.SuccessfulJobsHistoryLimit != *tt.want.SuccessfulJobsHistoryLimit || *s.FailedJobsHistoryLimit != *tt.want.FailedJobsHistoryLimit {
				t.Errorf("spec = %+v", s)
			}
			// Job-level defaults are the Job's business, not the template's.
			if s.JobTemplate.Spec.BackoffLimit != nil || s.JobTemplate.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
				t.Errorf("jobTemplate defaulted wrongly: %+v", s.JobTemplate.Spec)
			}
		})
	}
}

func TestCronJobValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*batchv1.CronJob)
		want []string
	}{
		{"valid", func(*batchv1.CronJob) {}, nil},
		{"descriptor", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "@hourly" }, nil},
		{"time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Europe/Berlin") }, nil},
		{"no schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "" }, []string{"spec.schedule"}},
		{"bad schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "61 * * * *" }, []string{"spec.schedule"}},
		{"TZ in schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "TZ=UTC 0 * * * *" }, []string{"spec.schedule"}},
		{"unknown zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Mars/Olympus") }, []string{"spec.timeZone"}},
		{"local zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Local") }, []string{"spec.timeZone"}},
		{"empty zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("") }, []string{"spec.timeZone"}},
		{"zone path", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("../../etc/passwd") }, []string{"spec.timeZone"}},
		{"concurrency", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = "Sometimes" }, []string{"spec.concurrencyPolicy"}},
		{"negative deadline and history", func(cj *batchv1.CronJob) {
			cj.Spec.StartingDeadlineSeconds = ptr.To[int64](-1)
			cj.Spec.FailedJobsHistoryLimit = ptr.To[int32](-1)
		}, []string{"spec.startingDeadlineSeconds", "spec.failedJobsHistoryLimit"}},
		{"long name", func(cj *batchv1.CronJob) { cj.Name = strings.Repeat("a", 53) }, []string{"metadata.name"}},
		{"template restart always", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		}, []string{"spec.jobTemplate.spec.template.spec.restartPolicy"}},
		{"template selector mismatch", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}
		}, []string{"spec.jobTemplate.spec.template.metadata.labels"}},
		{"template labels", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Labels = map[string]string{"bad key!": "x"}
		}, []string{"spec.jobTemplate.metadata.labels"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(CronJobs(), testCronJob(tt.mut)), tt.want...)
		})
	}
}

func TestCronJobValidateUpdate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		oldSchedule string
		schedule    string
		want        []string
	}{
		{"new schedule", "*/5 * * * *", "0 3 * * *", nil},
		{"TZ kept from before", "TZ=UTC 0 * * * *", "TZ=UTC 0 1 * * *", nil},
		{"TZ added", "0 * * * *", "CRON_TZ=UTC 0 * * * *", []string{"spec.schedule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old := testCronJob(func(cj *batchv1.CronJob) { cj.Spec.Schedule = tt.oldSchedule })
			CronJobs().Default(old)
			obj := old.DeepCopy()
			obj.Spec.Schedule = tt.schedule
			wlAssertFields(t, wlUpdate(CronJobs(), obj, old), tt.want...)
		})
	}
}

func TestCronJobRow(t *testing.T) {
	t.Parallel()
	last := metav1.NewTime(time.Now().Add(-3 * time.Minute))
	tests := []struct {
		name string
		mut  func(*batchv1.CronJob)
		want []any
	}{
		{"unset", func(*batchv1.CronJob) {}, []any{"backup", "*/5 * * * *", "<none>", "<unset>", int64(0), "<none>", "<unknown>", "web", "nginx:1.27", "<none>"}},
		{"scheduled", func(cj *batchv1.CronJob) {
			cj.Spec.TimeZone = ptr.To("UTC")
			cj.Spec.Suspend = ptr.To(true)
			cj.Status.Active = []corev1.ObjectReference{{Name: "backup-1"}}
			cj.Status.LastScheduleTime = &last
		}, []any{"backup", "*/5 * * * *", "UTC", "True", int64(1), "3m", "<unknown>", "web", "nginx:1.27", "<none>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertRow(t, CronJobs(), testCronJob(tt.mut), tt.want)
		})
	}
}

func TestParseCronSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		wantErr bool
		check   func(*cronSchedule) bool
	}{
		{spec: "* * * * *", check: func(s *cronSchedule) bool { return s.minute == 1<<60-1 && s.dow == 1<<7-1 }},
		{spec: "*/15 0 1,15 * 1-5", check: func(s *cronSchedule) bool {
			return s.minute == 1|1<<15|1<<30|1<<45 && s.hour == 1 && s.dom == 1<<1|1<<15 && s.dow == 0b111110
		}},
		{spec: "0 0 * jan-mar SUN", check: func(s *cronSchedule) bool { return s.month == 0b1110 && s.dow == 1 }},
		{spec: "5/20 * * * *", check: func(s *cronSchedule) bool { return s.minute == 1<<5|1<<25|1<<45 }},
		{spec: "0 12 ? * *", check: func(s *cronSchedule) bool { return s.hour == 1<<12 && s.dom == (1<<32-1)&^1 }},
		{spec: "@hourly", check: func(s *cronSchedule) bool { return s.minute == 1 && s.hour == 1<<24-1 }},
		{spec: "@WEEKLY", check: func(s *cronSchedule) bool { return s.dow == 1 }},
		{spec: "@every 90m", check: func(s *cronSchedule) bool { return s.every == 90*time.Minute }},
		{spec: "TZ=UTC 0 * * * *", check: func(s *cronSchedule) bool { return s.minute == 1 }},
		{spec: "", wantErr: true},
		{spec: "* * * *", wantErr: true},
		{spec: "* * * * * *", wantErr: true},
		{spec: "60 * * * *", wantErr: true},
		{spec: "* 24 * * *", wantErr: true},
		{spec: "* * 0 * *", wantErr: true},
		{spec: "* * * 13 *", wantErr: true},
		{spec: "* * * * 7", wantErr: true},
		{spec: "5-1 * * * *", wantErr: true},
		{spec: "*/0 * * * *", wantErr: true},
		{spec: "a * * * *", wantErr: true},
		{spec: "@fortnightly", wantErr: true},
		{spec: "@every soon", wantErr: true},
		{spec: "TZ=Nowhere/Land 0 * * * *", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			s, err := parseCronSchedule(tt.spec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && !tt.check(s) {
				t.Errorf("unexpected schedule %+v", *s)
			}
		})
	}
}
