package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/pki"
)

// ClusterConfig is how a server shares its embedded etcd with other
// servers (high availability), and how that etcd is backed up and
// restored. The zero value is a single server without scheduled
// snapshots, as before any of this existed.
type ClusterConfig struct {
	// ClusterInit makes this the first server of a cluster that others
	// join: its etcd serves peers on AdvertiseAddress:EtcdPeerPort over
	// TLS with certificates from the cluster CA. A server that ran alone
	// before keeps its data and becomes the first of several.
	ClusterInit bool
	// JoinURL, with Token, makes this server join the cluster of the
	// server at that URL (https://host:6443): it fetches the CA and node
	// token, has itself added to etcd, and then runs a full control
	// plane of its own. Later starts need neither.
	JoinURL string
	// Token is the cluster's node token, which pins its CA.
	Token string
	// EtcdMemberName names this server's etcd member, by which
	// `skiff etcd member-remove` removes it. Empty: "skiff" for a single
	// server; for one of several, the host name and a random suffix,
	// kept in the data dir.
	EtcdMemberName string
	// EtcdSnapshotInterval is how often the server saves a snapshot of
	// etcd in DataDir/snapshots; zero or less saves none.
	EtcdSnapshotInterval time.Duration
	// EtcdSnapshotRetention is how many scheduled snapshots are kept;
	// zero means DefaultSnapshotRetention.
	EtcdSnapshotRetention int
	// ClusterReset restarts this server's etcd as a single-member
	// cluster that keeps its data: the way back when a quorum is lost
	// for good. With ClusterResetRestorePath, the data comes from that
	// snapshot instead (the current data is moved aside). Other servers
	// must then delete their etcd data and join again.
	ClusterReset            bool
	ClusterResetRestorePath string
}

// validateCluster checks the cluster settings before anything starts.
func (s *Server) validateCluster() error {
	if err := s.validateJoin(); err != nil {
		return err
	}
	if (s.cfg.ClusterReset || s.cfg.ClusterResetRestorePath != "") && len(s.cfg.EtcdEndpoints) > 0 {
		return errors.New("cluster reset: only the embedded etcd can be reset")
	}
	if s.cfg.ClusterResetRestorePath != "" && !s.cfg.ClusterReset {
		return errors.New("cluster reset: --cluster-reset-restore-path needs --cluster-reset")
	}
	if s.cfg.ClusterReset && s.cfg.JoinURL != "" {
		return errors.New("cluster reset: a reset server founds a cluster of its own; it cannot also join one with --server")
	}
	return nil
}

// clusterAPI returns the cluster API this server serves.
func (s *Server) clusterAPI(bundle *pki.Bundle) *clusterAPI {
	c := &clusterAPI{bundle: bundle, log: s.log}
	s.mu.Lock()
	if s.member != nil {
		c.etcd, c.self, c.leader = s.member.Client(), s.member.Name(), s.member.LeaderID
	}
	s.mu.Unlock()
	var once sync.Once
	var kube kubernetes.Interface
	var kubeErr error
	c.kube = func() (kubernetes.Interface, error) {
		once.Do(func() {
			rc, err := clientcmd.BuildConfigFromFlags("", s.AdminKubeconfig())
			if err != nil {
				kubeErr = fmt.Errorf("loopback client: %w", err)
				return
			}
			kube, kubeErr = kubernetes.NewForConfig(rc)
		})
		return kube, kubeErr
	}
	return c
}

// startClusterDuties records this server for the cluster API and starts
// the scheduled snapshots, once the API serves.
func (s *Server) startClusterDuties(ctx context.Context, port string) {
	s.mu.Lock()
	e := s.member
	s.mu.Unlock()
	if e == nil {
		return
	}
	portNum, _ := strconv.Atoi(port)
	if err := recordServer(ctx, e.Client(), e.Name(), s.cfg.AdvertiseAddress, portNum); err != nil {
		s.log.Warn("cluster", "err", err)
	}
	s.runSnapshots(ctx, e.Client(), e.Name())
}

// memberDone is closed when the embedded etcd member stops; nil (never)
// with an external etcd.
func (s *Server) memberDone() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.member == nil {
		return nil
	}
	return s.member.Done()
}

// memberErr says why the embedded member stopped on its own.
func (s *Server) memberErr() error {
	s.mu.Lock()
	e := s.member
	s.mu.Unlock()
	err := e.Err()
	if errors.Is(err, etcd.ErrRemoved) {
		return fmt.Errorf("this server's etcd member %q was removed from the cluster, so the server stopped; "+
			"to run it as a server again, delete %s and start it with --server and --token to join anew: %w",
			e.Name(), filepath.Join(s.cfg.DataDir, etcdDirName), err)
	}
	if err != nil {
		return fmt.Errorf("etcd member %q stopped: %w", e.Name(), err)
	}
	return fmt.Errorf("etcd member %q stopped", e.Name())
}

// EtcdMemberName is this server's etcd member name, once Ready; empty
// with an external etcd.
func (s *Server) EtcdMemberName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.member == nil {
		return ""
	}
	return s.member.Name()
}
