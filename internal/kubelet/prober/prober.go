// Package prober runs a container's liveness, readiness and startup
// probes (exec through CRI, httpGet, tcpSocket and grpc) with upstream
// kubelet semantics, and keeps the latest result of each so the kubelet
// can decide readiness and when to restart a container.
package prober

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Kind is the purpose of a probe.
type Kind int

// The probe kinds.
const (
	Liveness Kind = iota
	Readiness
	Startup
	numKinds
)

// String names the kind as in the pod spec.
func (k Kind) String() string {
	switch k {
	case Liveness:
		return "Liveness"
	case Readiness:
		return "Readiness"
	case Startup:
		return "Startup"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Result is the outcome of a probe.
type Result int

// The probe results. Unknown is the zero value: no verdict yet.
const (
	Unknown Result = iota
	Success
	Failure
)

// String names the result.
func (r Result) String() string {
	switch r {
	case Unknown:
		return "Unknown"
	case Success:
		return "Success"
	case Failure:
		return "Failure"
	}
	return "Result(" + strconv.Itoa(int(r)) + ")"
}

// Target is what one probe runs against.
type Target struct {
	// PodIP is the host of httpGet and tcpSocket probes that name none,
	// and of every grpc probe.
	PodIP string
	// ContainerID is the CRI container exec probes run in; a
	// "runtime://" prefix as in pod status is accepted.
	ContainerID string
	// Container resolves named ports and, for exec probes, $(VAR)
	// references to its literal env values. May be nil.
	Container *corev1.Container
}

// UserAgent is what HTTP and gRPC probes identify as, so applications
// can tell probes from real traffic as they do with upstream kubelets.
const UserAgent = "kube-probe/1.37"

// maxOutput caps the output kept from exec probes and HTTP bodies: it is
// only for messages and a chatty endpoint must not cost memory.
const maxOutput = 10 * 1024

// Run performs probe p once. The result is Success or Failure with the
// probe's output (command output, response body or failure reason); an
// error means the probe could not be run at all (no handler, unknown
// port, runtime error, ctx ended), and the result is then Unknown, which
// the caller should discard rather than count as a failure.
func Run(ctx context.Context, p *corev1.Probe, target Target, runtime runtimeapi.RuntimeServiceClient) (Result, string, error) {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	var (
		res Result
		out string
		err error
	)
	switch {
	case p.Exec != nil:
		res, out, err = runExec(ctx, p.Exec, timeout, target, runtime)
	case p.HTTPGet != nil:
		res, out, err = runHTTP(ctx, p.HTTPGet, timeout, target)
	case p.TCPSocket != nil:
		res, out, err = runTCP(ctx, p.TCPSocket, timeout, target)
	case p.GRPC != nil:
		res, out, err = runGRPC(ctx, p.GRPC, timeout, target)
	default:
		return Unknown, "", errors.New("probe has no handler")
	}
	// A probe cut short because its caller gave up says nothing about
	// the container.
	if cerr := ctx.Err(); cerr != nil {
		return Unknown, "", fmt.Errorf("probe interrupted: %w", cerr)
	}
	if err != nil {
		return Unknown, "", err
	}
	return res, out, nil
}

// resolvePort turns a probe port into a number: an int, the
// containerPort of a named port, or as a last resort a number written as
// a string.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	port := p.IntValue()
	if p.Type == intstr.String {
		found := false
		if c != nil {
			for _, cp := range c.Ports {
				if cp.Name == p.StrVal {
					port, found = int(cp.ContainerPort), true
					break
				}
			}
		}
		if !found {
			n, err := strconv.Atoi(p.StrVal)
			if err != nil {
				return 0, fmt.Errorf("couldn't find port %q in container", p.StrVal)
			}
			port = n
		}
	}
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port number: %d", port)
	}
	return port, nil
}

// readAtMost reads up to limit bytes of r; a longer stream is truncated
// rather than an error, since only a message is made of it.
func readAtMost(r io.Reader, limit int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit))
	return string(b), err
}
