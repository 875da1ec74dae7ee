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

	lastLog := time.Now()
	err = poll(ctx, cfg.agent.timeout, time.Second, fmt.Sprintf("%d hollow nodes Ready", count), func() (bool, error) {
		if err := agent.exitedErr(); err != nil {
			return false, err
		}
		// From the watch cache: a full list of a thousand nodes each
		// second would load the server the nodes are registering with.
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: hollowLabel, ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for i := range list.Items {
			if nodeReady(&list.Items[i]) {
				ready++
			}
		}
		if time.Since(lastLog) > 10*time.Second {
			slog.InfoContext(ctx, "hollow nodes", "registered", len(list.Items), "ready", ready, "of", count)
			lastLog = time.Now()
		}
		return ready == count, nil
	})
	if err != nil {
		return err
	}
	rep.hollow = count
	rep.hollowReady = time.Since(agent.started)
	slog.InfoContext(ctx, "hollow nodes ready; settling before the memory reading", "nodes", count, "after", rep.hollowReady, "settle", cfg.agent.settle)
	if err := sleep(ctx, cfg.agent.settle); err != nil {
		return err
	}
	if rep.hollowAgent, err = readMemory(agent.pid()); err != nil {
		return err
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
