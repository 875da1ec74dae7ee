package job

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// completionIndexEnv is the variable upstream gives Indexed Jobs' containers.
const completionIndexEnv = "JOB_COMPLETION_INDEX"

// releasePatch removes only our finalizer, leaving any others in place
// and needing no resourceVersion.
var releasePatch = []byte(`{"metadata":{"$deleteFromPrimitiveList/finalizers":["` + batchv1.JobTrackingFinalizer + `"]}}`)

func hasFinalizer(pod *corev1.Pod) bool {
	for _, f := range pod.Finalizers {
		if f == batchv1.JobTrackingFinalizer {
			return true
		}
	}
	return false
}

// ownedPods lists the pods job's selector matches and job controls. Pods
// matching but controlled by no one are not adopted (upstream would).
func (c *Controller) ownedPods(job *batchv1.Job) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	if job.Spec.Selector == nil {
		sel = labels.Nothing()
	}
	all, err := c.pods.Pods(job.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var own []*corev1.Pod
	for _, p := range all {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == job.UID {
			own = append(own, p)
		}
	}
	return own, nil
}

// releaseStrays removes our finalizer from pods controlled by a Job named
// name that is not uid (deleted, or deleted and re-created): nobody will
// ever count them, and the finalizer would keep them forever.
func (c *Controller) releaseStrays(ctx context.Context, ns, name string, uid types.UID) error {
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.Kind != "Job" || ref.Name != name || ref.UID == uid || !hasFinalizer(p) {
			continue
		}
		errs = append(errs, c.release(ctx, p))
	}
	return errors.Join(errs...)
}

// release removes the tracking finalizer from pod.
func (c *Controller) release(ctx context.Context, pod *corev1.Pod) error {
	_, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, releasePatch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer from pod %s: %w", pod.Name, err)
	}
	return nil
}

// releaseTracked removes the tracking finalizer from a pod of the Job
// at key, remembering the removal until the pod informer shows it.
func (c *Controller) releaseTracked(ctx context.Context, key string, pod *corev1.Pod) error {
	c.removals.expect(key, pod.UID)
	err := c.release(ctx, pod)
	if err != nil {
		c.removals.drop(key, pod.UID)
	}
	return err
}

// deletePods deletes pods the controller no longer wants. It releases
// each first so that pods it removes on purpose (suspension, deadline,
// excess) are not later counted as failures.
func (c *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod) (int, error) {
	if len(pods) == 0 {
		return 0, nil
	}
	c.expect.expect(key, 0, len(pods))
	deleted := 0
	var errs []error
	for _, p := range pods {
		err := c.releaseTracked(ctx, key, p)
		if err == nil {
			err = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		}
		switch {
		case err == nil:
			deleted++
			c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
		case apierrors.IsNotFound(err):
			c.expect.observed(key, 0, 1)
		default:
			c.expect.observed(key, 0, 1)
			c.recorder.Eventf(job, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs = append(errs, fmt.Errorf("delete pod %s: %w", p.Name, err))
		}
	}
	return deleted, errors.Join(errs...)
}

// createPods creates one pod per entry of indexes (-1: not indexed).
func (c *Controller) createPods(ctx context.Context, key string, job *batchv1.Job, indexes []int, failures map[int]int) (int, error) {
	if len(indexes) == 0 {
		return 0, nil
	}
	c.expect.expect(key, len(indexes), 0)
	created := 0
	var errs []error
	for _, ix := range indexes {
		pod := newPod(job, ix, failures[ix])
		got, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			c.expect.observed(key, 1, 0)
			c.recorder.Eventf(job, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			errs = append(errs, fmt.Errorf("create pod: %w", err))
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				// The namespace is going away or a quota refuses: more
				// attempts in this sync would fail the same way.
				break
			}
			continue
		}
		created++
		c.recorder.Eventf(job, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", got.Name)
	}
	return created, errors.Join(errs...)
}

// newPod builds a pod from job's template. The tracking finalizer keeps a
// finished pod until its outcome is in the Job's status; index ≥ 0 makes
// it the pod of that completion index.
func newPod(job *batchv1.Job, index, failures int) *corev1.Pod {
	t := job.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Labels:          maps.Clone(t.Labels),
			Annotations:     maps.Clone(t.Annotations),
			Finalizers:      []string{batchv1.JobTrackingFinalizer},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: t.Spec,
	}
	if index < 0 {
		return pod
	}
	ix := strconv.Itoa(index)
	pod.GenerateName = job.Name + "-" + ix + "-"
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Labels[batchv1.JobCompletionIndexAnnotation] = ix
	pod.Annotations[batchv1.JobCompletionIndexAnnotation] = ix
	if job.Spec.BackoffLimitPerIndex != nil {
		pod.Annotations[batchv1.JobIndexFailureCountAnnotation] = strconv.Itoa(failures)
	}
	// A stable per-index hostname lets indexed workers find each other
	// through a headless Service named in spec.subdomain.
	if pod.Spec.Hostname == "" {
		pod.Spec.Hostname = job.Name + "-" + ix
	}
	env := corev1.EnvVar{Name: completionIndexEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
		FieldPath: "metadata.annotations['" + batchv1.JobCompletionIndexAnnotation + "']",
	}}}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if !hasEnv(cs[i].Env, completionIndexEnv) {
				cs[i].Env = append(cs[i].Env, env)
			}
		}
	}
	return pod
}

func hasEnv(env []corev1.EnvVar, name string) bool {
	for _, e := range env {
		if e.Name == name {
			return true
		}
	}
	return false
}
