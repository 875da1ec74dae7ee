package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// hollowLabel marks the Nodes of hollow nodes.
const hollowLabel = "skiff.io/hollow=true"

// runHollowNodes runs `skiff agent --simulate N` against a control plane
// of its own, waits until all N nodes are Ready, and reads the agent's
// memory.
func runHollowNodes(ctx context.Context, cfg config, bin string, rep *agentReport) (err error) {
	count := cfg.agent.hollow
	cidr, err := hollowClusterCIDR(count)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skiff-bench-hollow-")
	if err != nil {
		return err
	}
	if cfg.keepData {
		defer slog.InfoContext(ctx, "kept data directory", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	srv, err := startServer(ctx, bin, dir, "--cluster-cidr", cidr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	if _, err := srv.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	base, err := clientcmd.BuildConfigFromFlags("", srv.kubeconfig())
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := newClientset(base)
	if err != nil {
		return err
	}
	token, err := os.ReadFile(filepath.Join(srv.dataDir, "node-token"))
	if err != nil {
		return fmt.Errorf("node token: %w", err)
	}

	agent, err := startProc(ctx, "hollow agent", bin, []string{"agent",
		"--simulate", strconv.Itoa(count),
		"--server", fmt.Sprintf("https://127.0.0.1:%d", srv.port),
		"--token", strings.TrimSpace(string(token)),
		"--data-dir", filepath.Join(dir, "agent"),
		"--node-name", "bench",
	}, filepath.Join(dir, "agent.log"), "nodes", count)
	if err != nil {
		return err
	}
	// Hollow nodes run no containers: stopping the agent is all there is
	// to clean up. A thousand kubelets take a moment to stop.
	defer func() { err = errors.Join(err, agent.stop(time.Minute)) }()

	countReady := func() (registered, ready int, err error) {
		// From the watch cache: a full list of a thousand nodes each
		// second would load the server the nodes are registering with.
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: hollowLabel, ResourceVersion: "0"})
		if err != nil {
			return 0, 0, err
		}
		for i := range list.Items {
			if nodeReady(&list.Items[i]) {
				ready++
			}
		}
		return len(list.Items), ready, nil
	}
	var registered, ready int
	lastLog := time.Now()
	err = poll(ctx, cfg.agent.timeout, time.Second, fmt.Sprintf("%d hollow nodes Ready", count), func() (bool, error) {
		if err := agent.exitedErr(); err != nil {
			return false, err
		}
		var err error
		if registered, ready, err = countReady(); err != nil {
			return false, nil // the server is busy: ask again
		}
		if time.Since(lastLog) > 10*time.Second {
			slog.InfoContext(ctx, "hollow nodes", "registered", registered, "ready", ready, "of", count)
			lastLog = time.Now()
		}
		return ready == count, nil
	})
	if err != nil {
		hint := "see " + agent.logPath
		if !cfg.keepData {
			hint = "--keep keeps the agent's log"
		}
		return fmt.Errorf("%w (last seen: %d registered, %d Ready; %s)", err, registered, ready, hint)
	}
	rep.hollow = count
	rep.hollowReady = time.Since(agent.started)
	// Long enough for every node to renew its Lease a few times and for
	// the node lifecycle controller's grace period to pass: nodes whose
	// heartbeats fall behind turn NotReady within it.
	slog.InfoContext(ctx, "hollow nodes ready; settling before the memory reading", "nodes", count, "after", rep.hollowReady, "settle", cfg.agent.hollowSettle)
	if err := sleep(ctx, cfg.agent.hollowSettle); err != nil {
		return err
	}
	if rep.hollowAgent, err = readMemory(agent.pid()); err != nil {
		return err
	}
	if _, rep.hollowStillReady, err = countReady(); err != nil {
		return fmt.Errorf("count Ready nodes: %w", err)
	}
	rep.hollowServer, err = srv.readMemory()
	return err
}

// hollowClusterCIDR is a pod range with a /24 for each of count nodes:
// the default /16 has only 256.
func hollowClusterCIDR(count int) (string, error) {
	prefix := 24 - bits.Len(uint(max(count, 1)-1))
	if prefix < 10 {
		return "", fmt.Errorf("%d hollow nodes: at most %d", count, 1<<14)
	}
	return fmt.Sprintf("10.64.0.0/%d", prefix), nil
}
