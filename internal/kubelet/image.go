package kubelet

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pullImage makes c's image present as its pull policy asks and returns the
// image reference to create the container from; a nil waiting state means
// success, otherwise it says why the container waits (ErrImagePull,
// ImagePullBackOff, ErrImageNeverPull), as upstream reports it.
func (k *Kubelet) pullImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (string, *corev1.ContainerStateWaiting) {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.Image}
	st, err := k.cfg.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
	present := err == nil && st.GetImage() != nil
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
	}
	switch {
	case policy == corev1.PullNever && !present:
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
		k.event(pod, c.Name, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
		return "", &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: msg}
	case policy != corev1.PullAlways && present:
		return st.Image.Id, nil
	}
	key := "pull/" + backoffKey(pod, c.Name)
	now := k.clock.Now()
	if d := k.backoff.wait(key, now); d > 0 {
		msg := fmt.Sprintf("Back-off pulling image %q", c.Image)
		k.event(pod, c.Name, corev1.EventTypeNormal, "BackOff", "%s", msg)
		return "", &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: msg}
	}
	k.event(pod, c.Name, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	start := k.clock.Now()
	resp, err := k.cfg.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec, Auth: k.pullAuth(pod, c.Image)})
	if err != nil {
		if ctx.Err() != nil {
			// Aborted (the pod is being deleted): not the image's fault.
			return "", &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		k.backoff.next(key, now)
		msg := fmt.Sprintf("Failed to pull image %q: %v", c.Image, err)
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "%s", msg)
		return "", &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: msg}
	}
	k.backoff.forget(key)
	k.event(pod, c.Name, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s", c.Image, k.clock.Since(start).Round(time.Millisecond))
	return resp.ImageRef, nil
}

// ensureImagePresent pulls image unless the runtime has it.
func (k *Kubelet) ensureImagePresent(ctx context.Context, image string) error {
	if image == "" {
		return nil
	}
	spec := &runtimeapi.ImageSpec{Image: image}
	if st, err := k.cfg.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err == nil && st.GetImage() != nil {
		return nil
	}
	if _, err := k.cfg.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	return nil
}

// pullAuth finds credentials for image's registry in the pod's
// imagePullSecrets (kubernetes.io/dockerconfigjson or dockercfg).
func (k *Kubelet) pullAuth(pod *corev1.Pod, image string) *runtimeapi.AuthConfig {
	host := registryHost(image)
	for _, ref := range pod.Spec.ImagePullSecrets {
		sec, err := k.secrets.Secrets(pod.Namespace).Get(ref.Name)
		if err != nil {
			continue
		}
		auths := map[string]dockerAuth{}
		switch sec.Type {
		case corev1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]dockerAuth `json:"auths"`
			}
			if json.Unmarshal(sec.Data[corev1.DockerConfigJsonKey], &cfg) != nil {
				continue
			}
			auths = cfg.Auths
		case corev1.SecretTypeDockercfg:
			if json.Unmarshal(sec.Data[corev1.DockerConfigKey], &auths) != nil {
				continue
			}
		}
		for server, a := range auths {
			if registryHost(strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://"), "/")+"/x") != host {
				continue
			}
			user, pass := a.Username, a.Password
			if a.Auth != "" {
				if raw, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
					user, pass, _ = strings.Cut(string(raw), ":")
				}
			}
			return &runtimeapi.AuthConfig{Username: user, Password: pass, ServerAddress: server, IdentityToken: a.IdentityToken}
		}
	}
	return nil
}

// dockerAuth is one registry's entry in a docker config file.
type dockerAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// registryHost is the registry an image reference names; Docker Hub when
// the first component is not a host.
func registryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if !ok || !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io"
	}
	if first == "index.docker.io" || first == "registry-1.docker.io" {
		return "docker.io"
	}
	return first
}
