package kubelet

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/runtime/cri"
)

// Upstream's termination constants: a pod's default grace period, the
// least any container gets (even with grace 0, so that a force-deleted
// pod's processes see SIGTERM), and the least a container gets after its
// preStop hook used up the rest.
const (
	defaultGracePeriod = 30
	minGracePeriod     = 1
	minGraceAfterHook  = 2
)

// gracePeriod is how long the pod's containers get to stop.
func gracePeriod(pod *corev1.Pod) int64 {
	g := int64(defaultGracePeriod)
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		g = *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	return max(g, minGracePeriod)
}

// probeGrace is the grace period of a container killed by its liveness or
// startup probe: the probe's own, else the pod's.
func probeGrace(pod *corev1.Pod, c *corev1.Container) int64 {
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			return *p.TerminationGracePeriodSeconds
		}
	}
	return gracePeriod(pod)
}

// killContainer stops a running container: its preStop hook first, then
// the runtime's SIGTERM, SIGKILL after what is left of the grace period.
func (k *Kubelet) killContainer(ctx context.Context, pod *corev1.Pod, st *runtimeapi.ContainerStatus, grace int64, reason string) {
	name := st.Metadata.GetName()
	spec := specOf(pod, name)
	if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil && grace > 0 && st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		start := k.clock.Now()
		timeout := time.Duration(grace) * time.Second
		ip := ""
		if sb := st.Labels[labelSandboxID]; sb != "" {
			ip = k.sandboxIP(ctx, sb)
		}
		if err := k.runHook(ctx, pod, spec, st.Id, spec.Lifecycle.PreStop, ip, timeout); err != nil {
			k.event(pod, name, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
		grace = max(grace-int64(k.clock.Since(start)/time.Second), minGraceAfterHook)
	}
	k.event(pod, name, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
	k.log.Debug("stop container", "pod", pod.Namespace+"/"+pod.Name, "container", name, "reason", reason, "grace", grace)
	k.stopContainer(ctx, pod, name, st.Id, grace)
}

// stopContainer asks the runtime to stop a container within grace seconds.
// The call lasts as long as the grace period, so its bound is the grace
// on top of the runtime's usual one, as upstream's kubelet does.
func (k *Kubelet) stopContainer(ctx context.Context, pod *corev1.Pod, name, id string, grace int64) {
	ctx, cancel := context.WithTimeout(ctx, cri.DefaultCallTimeout+time.Duration(grace)*time.Second)
	defer cancel()
	if _, err := k.cfg.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: grace}); err != nil {
		k.log.Warn("stop container", "pod", pod.Namespace+"/"+pod.Name, "container", name, "err", err)
	}
}

func specOf(pod *corev1.Pod, name string) *corev1.Container {
	for _, c := range allContainers(pod) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// runHook runs a lifecycle handler (exec, httpGet or sleep) within timeout.
func (k *Kubelet) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler, podIP string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		resp, err := k.cfg.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: h.Exec.Command, Timeout: int64(timeout / time.Second)})
		if err != nil {
			return fmt.Errorf("exec %v: %w", h.Exec.Command, err)
		}
		if resp.ExitCode != 0 {
			return fmt.Errorf("command %v exited with %d: %s", h.Exec.Command, resp.ExitCode, resp.Stderr)
		}
		return nil
	case h.HTTPGet != nil:
		return httpHook(ctx, k.hookClient, c, h.HTTPGet, podIP)
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-k.clock.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
		return nil
	}
	return errNoHandler
}

// newHookClient is the HTTP client of httpGet hooks. As for probes, it
// goes straight to the pod (never through the node's proxy settings) and
// does not verify the certificate of an HTTPS hook, which pods serve
// with certificates no node could verify. Connections are not kept, as
// the next hook may be long in coming.
func newHookClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		DisableKeepAlives: true,
	}}
}

func httpHook(ctx context.Context, client *http.Client, c *corev1.Container, g *corev1.HTTPGetAction, podIP string) error {
	host := g.Host
	if host == "" {
		host = podIP
	}
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return err
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + g.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("http %s: %s", url, resp.Status)
	}
	return nil
}

// resolvePort turns a port number or a container port's name into a number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("port %q not found in container %s", p.StrVal, c.Name)
}

// terminatePod stops everything of a pod being deleted, reports its final
// status, cleans up after it and confirms the deletion to the API server,
// which then removes the object. deleted means the object is already gone
// (a forced deletion or an orphan found in the runtime).
func (k *Kubelet) terminatePod(ctx context.Context, pod *corev1.Pod, state *podState, deleted bool) syncResult {
	grace := gracePeriod(pod)
	if deleted {
		grace = min(grace, minGraceAfterHook)
	}
	if running := state.running(); len(running) > 0 {
		k.killAll(ctx, pod, running, grace, "pod deleted")
	}
	if ctx.Err() != nil {
		return syncResult{}
	}
	k.probes.RemovePod(pod.UID)
	if !deleted && len(state.containers) > 0 {
		// As upstream, a deleted pod ends in a terminal phase with its
		// containers' exit codes before it goes, for controllers (Jobs)
		// that count how pods ended. Only when its containers are still
		// there to say so: a second pass must not report them lost.
		if st, err := k.podState(ctx, pod.UID); err == nil {
			if err := k.postStatus(ctx, pod, k.finalStatus(pod, st)); err != nil && ctx.Err() == nil {
				k.log.Warn("post final pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			}
		}
	}
	if err := k.removePod(ctx, pod); err != nil {
		k.log.Warn("clean up pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		return syncResult{requeueAfter: time.Second}
	}
	if !deleted {
		err := k.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			k.log.Warn("confirm pod deletion", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return syncResult{requeueAfter: time.Second}
		}
	}
	return syncResult{done: true}
}

// killAll stops containers of the pod in parallel, app containers before
// sidecars, which keep serving them until they are gone.
func (k *Kubelet) killAll(ctx context.Context, pod *corev1.Pod, cs []*runtimeapi.ContainerStatus, grace int64, reason string) {
	var apps, sidecars []*runtimeapi.ContainerStatus
	for _, c := range cs {
		if spec := specOf(pod, c.Metadata.GetName()); spec != nil && isSidecar(spec) {
			sidecars = append(sidecars, c)
		} else {
			apps = append(apps, c)
		}
	}
	for _, group := range [][]*runtimeapi.ContainerStatus{apps, sidecars} {
		var wg sync.WaitGroup
		for _, c := range group {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k.killContainer(ctx, pod, c, grace, reason)
			}()
		}
		wg.Wait()
	}
}

// removePod removes the pod's containers, sandboxes, volumes, files and
// cgroup. Its containers must have stopped.
func (k *Kubelet) removePod(ctx context.Context, pod *corev1.Pod) error {
	state, err := k.podState(ctx, pod.UID)
	if err != nil {
		return err
	}
	for _, c := range state.containers {
		if _, err := k.cfg.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			return fmt.Errorf("remove container %s: %w", c.Metadata.GetName(), err)
		}
		k.forgetContainer(c.Id)
	}
	for _, sb := range state.sandboxes {
		if _, err := k.cfg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			return fmt.Errorf("stop sandbox: %w", err)
		}
		if _, err := k.cfg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			return fmt.Errorf("remove sandbox: %w", err)
		}
		k.forgetSandbox(sb.Id)
	}
	if err := k.cfg.Volumes.Teardown(pod.UID); err != nil {
		return fmt.Errorf("tear down volumes: %w", err)
	}
	if err := os.RemoveAll(k.podDir(pod)); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	if err := os.RemoveAll(k.podLogDir(pod)); err != nil {
		return fmt.Errorf("remove pod logs: %w", err)
	}
	if len(state.sandboxes) > 0 {
		if err := k.removePodCgroups(pod.UID); err != nil {
			k.log.Debug("remove pod cgroup", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	return nil
}

// forgetPod drops per-pod memory once the pod is gone.
func (k *Kubelet) forgetPod(uid types.UID) {
	k.probes.RemovePod(uid)
	k.backoff.forget(string(uid) + "/")
	k.backoff.forget("pull/" + string(uid) + "/")
	k.backoff.forget("sandbox/" + string(uid))
	k.statusMu.Lock()
	delete(k.lastStatus, uid)
	delete(k.postedOver, uid)
	k.statusMu.Unlock()
}

// stopSandboxes stops the pod's sandboxes that are not known stopped: a
// finished pod's, to release its IP (the exited containers stay for their
// logs), or dead ones, whose network the runtime keeps until stopped.
func (k *Kubelet) stopSandboxes(ctx context.Context, state *podState) {
	for _, sb := range state.sandboxes {
		k.statuses.mu.Lock()
		done := k.statuses.stopped[sb.Id]
		k.statuses.mu.Unlock()
		if done {
			continue
		}
		if _, err := k.cfg.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			if ctx.Err() == nil {
				k.log.Warn("stop sandbox", "podSandboxId", sb.Id, "err", err)
			}
			continue
		}
		k.statuses.mu.Lock()
		k.statuses.stopped[sb.Id] = true
		k.statuses.mu.Unlock()
	}
}

// pruneDead removes exited containers beyond the newest two instances of
// each container (the current and the previous one, for `logs
// --previous`), and dead sandboxes left with no container.
func (k *Kubelet) pruneDead(ctx context.Context, state *podState) {
	seen := map[string]int{}
	used := map[string]bool{}
	for _, c := range state.containers {
		name := c.Metadata.GetName()
		seen[name]++
		if seen[name] <= 2 || c.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			used[c.Labels[labelSandboxID]] = true
			continue
		}
		if _, err := k.cfg.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err == nil {
			k.forgetContainer(c.Id)
		}
	}
	for i, sb := range state.sandboxes {
		if i == 0 || used[sb.Id] || sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		if _, err := k.cfg.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err == nil {
			k.forgetSandbox(sb.Id)
		}
	}
}
