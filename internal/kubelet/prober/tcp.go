package prober

import (
	"context"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runTCP succeeds when a TCP connection is accepted within the timeout;
// nothing is sent, the connection is closed at once.
func runTCP(ctx context.Context, t *corev1.TCPSocketAction, timeout time.Duration, target Target) (Result, string, error) {
	port, err := resolvePort(t.Port, target.Container)
	if err != nil {
		return Unknown, "", err
	}
	host := t.Host
	if host == "" {
		host = target.PodIP
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, err.Error(), nil
	}
	_ = conn.Close()
	return Success, "", nil
}
