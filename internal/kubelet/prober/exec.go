package prober

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/kubelet/envvars"
)

// execGrace is how long past the probe timeout we wait for the runtime,
// which enforces the timeout itself and needs a moment to kill the
// command and answer.
const execGrace = 5 * time.Second

func runExec(ctx context.Context, e *corev1.ExecAction, timeout time.Duration, target Target, runtime runtimeapi.RuntimeServiceClient) (Result, string, error) {
	if runtime == nil {
		return Unknown, "", errors.New("exec probe: no container runtime")
	}
	id := target.ContainerID
	if _, after, ok := strings.Cut(id, "://"); ok {
		id = after
	}
	cmd := expandCommand(e.Command, target.Container)
	ctx, cancel := context.WithTimeout(ctx, timeout+execGrace)
	defer cancel()
	resp, err := runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{
		ContainerId: id,
		Cmd:         cmd,
		Timeout:     int64(timeout / time.Second),
	})
	if err != nil {
		// Exceeding the timeout is the command's fault: a hung health
		// check is a failed one.
		if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
			return Failure, fmt.Sprintf("command %q timed out after %s", cmd, timeout), nil
		}
		return Unknown, "", fmt.Errorf("exec probe in container %s: %w", id, err)
	}
	out := string(resp.GetStdout()) + string(resp.GetStderr())
	if len(out) > maxOutput {
		out = out[:maxOutput]
	}
	if resp.GetExitCode() != 0 {
		return Failure, out, nil
	}
	return Success, out, nil
}

// expandCommand expands $(VAR) in the probe command against the literal
// values of the container's env, as the kubelet does for probes: values
// from references are not known here and count as empty.
func expandCommand(cmd []string, c *corev1.Container) []string {
	if c == nil || len(c.Env) == 0 {
		return cmd
	}
	env := make(map[string]string, len(c.Env))
	for _, v := range c.Env {
		env[v.Name] = v.Value
	}
	out := make([]string, len(cmd))
	for i, arg := range cmd {
		out[i] = envvars.Expand(arg, env)
	}
	return out
}
