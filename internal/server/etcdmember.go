package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/etcd/snapshot"
	"github.com/skiffhq/skiff/internal/pki"
)

// Files in the data directory about the embedded etcd member.
const (
	// etcdDirName holds the member's data.
	etcdDirName = "etcd"
	// memberNameFile keeps the member's name: it must not change across
	// restarts, and a random suffix makes it unique among servers that
	// share a host name.
	memberNameFile = "etcd-member-name"
	// resetMarkerFile records the cluster reset last done (the snapshot
	// restored, by hash, or a forced new cluster), so that a restart still
	// carrying the flags does not throw away what was written, or who
	// joined, since. A start without the flags deletes it, so a later
	// reset is done again.
	resetMarkerFile = "etcd-reset-done"
	// forceNewCluster is the reset marker of a reset without a snapshot.
	forceNewCluster = "force-new-cluster"
)

// Raft timings of a cluster of several: etcd's own defaults, since
// members now talk over a network. A single server keeps the etcd
// package's much shorter ones, which make it ready sooner.
const (
	haHeartbeat = 100 * time.Millisecond
	haElection  = time.Second
)

// joinTimeout bounds how long a joining server keeps trying to reach the
// server it joins through and to be added: servers are often started
// together, and a join waits for the one before it.
const joinTimeout = 5 * time.Minute

// ha reports whether this server is (or becomes) one of several: its
// etcd then speaks TLS on the advertise address. Once so, always so.
func (s *Server) ha() bool {
	return s.cfg.ClusterInit || s.cfg.JoinURL != "" || pki.HasEtcdTLS(s.cfg.DataDir)
}

// startEmbeddedEtcd starts this server's member: alone, first of several,
// joining through JoinURL, restored from a snapshot, or reset to a
// single member, as configured.
func (s *Server) startEmbeddedEtcd(ctx context.Context, bundle *pki.Bundle) (*etcd.Server, error) {
	dir := filepath.Join(s.cfg.DataDir, etcdDirName)
	ha := s.ha()
	name, err := s.memberName(ha, dir)
	if err != nil {
		return nil, err
	}
	cfg := etcd.Config{
		Name:            name,
		DataDir:         dir,
		ListenClientURL: "http://127.0.0.1:" + strconv.Itoa(s.cfg.EtcdClientPort),
		ListenPeerURL:   "http://127.0.0.1:" + strconv.Itoa(s.cfg.EtcdPeerPort),
		Logger:          s.log,
	}
	if ha {
		// Peers dial the advertise address, and only that.
		paths, err := bundle.EnsureEtcdTLS([]string{s.cfg.AdvertiseAddress}, s.log)
		if err != nil {
			return nil, fmt.Errorf("etcd credentials: %w", err)
		}
		creds := etcd.TLS{CertFile: paths.MemberCert, KeyFile: paths.MemberKey, CAFile: paths.CAFile}
		peer, client := creds, creds
		peer.AllowedCNs = []string{pki.EtcdMemberCN}
		client.AllowedCNs = []string{pki.EtcdMemberCN, pki.EtcdClientCN}
		cfg.PeerTLS, cfg.ClientTLS = &peer, &client
		// Clients stay on the loopback: other servers reach etcd through
		// the cluster API, so only the peer port faces the network.
		cfg.ListenClientURL = "https://127.0.0.1:" + strconv.Itoa(s.cfg.EtcdClientPort)
		cfg.ListenPeerURL = "https://" + net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.EtcdPeerPort))
		cfg.AdvertisePeerURL = "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.EtcdPeerPort))
		cfg.HeartbeatInterval, cfg.ElectionTimeout = haHeartbeat, haElection
	}
	peerURL := cfg.AdvertisePeerURL
	if peerURL == "" {
		peerURL = cfg.ListenPeerURL
	}

	hadData := hasMemberData(dir)
	reset, err := s.pendingReset(hadData)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(reset, "restore "):
		if err := s.restoreSnapshot(dir, name, peerURL); err != nil {
			return nil, err
		}
		hadData = false // a new member: nothing to update
	case reset == forceNewCluster:
		if !hadData {
			return nil, fmt.Errorf("cluster reset: %s holds no etcd data to reset", dir)
		}
		// Keep the data, forget every other member: the way back when a
		// quorum is lost for good.
		cfg.ForceNewCluster = true
		s.log.Warn("resetting etcd to a single-member cluster; other servers must delete their etcd data and join again", "member", name)
	}

	var joined etcd.Member
	if !hadData && s.cfg.JoinURL != "" {
		cfg.Join = true
		if joined, cfg.InitialCluster, err = s.addSelf(ctx, name, peerURL); err != nil {
			return nil, err
		}
	}

	e, err := etcd.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if err := e.Start(ctx); err != nil {
		if errors.Is(err, etcd.ErrRemoved) {
			return nil, fmt.Errorf("this server's etcd member %q was removed from the cluster, so its etcd data in %s is stale; "+
				"to run it as a server again, delete %s (keep the rest of %s) and start it with --server and --token to join anew: %w",
				name, dir, dir, s.cfg.DataDir, err)
		}
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if reset != "" {
		if err := os.WriteFile(filepath.Join(s.cfg.DataDir, resetMarkerFile), []byte(reset+"\n"), 0o600); err != nil {
			e.Close()
			return nil, fmt.Errorf("cluster reset: %w", err)
		}
	}
	if joined.ID != 0 {
		pctx, cancel := context.WithTimeout(ctx, joinTimeout)
		err := etcd.Promote(pctx, e.Client(), joined.ID, 200*time.Millisecond)
		cancel()
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("join: %w", err)
		}
		s.log.Info("joined the cluster as a voting etcd member", "member", name, "id", joined.IDHex)
	}
	if ha && hadData {
		// A server that ran alone before --cluster-init, or that now
		// advertises another address, tells the cluster where it is.
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		changed, err := etcd.UpdatePeerURL(uctx, e.Client(), e.MemberID(), peerURL)
		cancel()
		if err != nil {
			s.log.Warn("update etcd peer URL", "peerURL", peerURL, "err", err)
		} else if changed {
			s.log.Info("etcd peer URL updated", "peerURL", peerURL)
		}
	}
	return e, nil
}

// hasMemberData reports whether dir holds an etcd member's log.
func hasMemberData(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

// memberName is this server's etcd member name: the configured one, the
// one kept in the data dir, "skiff" for a server that ran alone before
// (its member already has that name), else host name and a random
// suffix, kept for next time.
func (s *Server) memberName(ha bool, dir string) (string, error) {
	if s.cfg.EtcdMemberName != "" {
		return s.cfg.EtcdMemberName, nil
	}
	path := filepath.Join(s.cfg.DataDir, memberNameFile)
	if data, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(data)) != "" {
		return strings.TrimSpace(string(data)), nil
	}
	if !ha {
		return etcd.DefaultName, nil
	}
	name := etcd.DefaultName
	if !hasMemberData(dir) {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "skiff"
		}
		suffix := make([]byte, 4)
		if _, err := rand.Read(suffix); err != nil {
			return "", fmt.Errorf("etcd member name: %w", err)
		}
		name = host + "-" + hex.EncodeToString(suffix)
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("etcd member name: %w", err)
	}
	return name, nil
}

// addSelf has the server at JoinURL add this server's member as a
// learner, and returns it with the initial cluster to start with.
func (s *Server) addSelf(ctx context.Context, name, peerURL string) (etcd.Member, string, error) {
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	client, err := s.joinClient(ctx)
	if err != nil {
		return etcd.Member{}, "", err
	}
	defer client.close()
	var resp AddMemberResponse
	err = retryCluster(ctx, true, func() (err error) {
		resp, err = client.addMember(ctx, AddMemberRequest{Name: name, PeerURL: peerURL})
		if err != nil {
			s.log.Info("waiting to be added to etcd", "server", s.cfg.JoinURL, "err", err)
		}
		return err
	})
	if err != nil {
		return etcd.Member{}, "", fmt.Errorf("join %s: add etcd member: %w", s.cfg.JoinURL, err)
	}
	initial, err := etcd.InitialCluster(resp.Members)
	if err != nil {
		return etcd.Member{}, "", fmt.Errorf("join %s: %w", s.cfg.JoinURL, err)
	}
	if resp.Member.ID, err = strconv.ParseUint(resp.Member.IDHex, 16, 64); err != nil {
		return etcd.Member{}, "", fmt.Errorf("join %s: member ID %q: %w", s.cfg.JoinURL, resp.Member.IDHex, err)
	}
	s.log.Info("added to etcd as a learner", "member", name, "id", resp.Member.IDHex, "initialCluster", initial)
	return resp.Member, initial, nil
}

// pendingReset returns the cluster reset the flags ask for and that is
// not done yet: "restore <snapshot hash>", forceNewCluster, or "".
func (s *Server) pendingReset(hadData bool) (string, error) {
	marker := filepath.Join(s.cfg.DataDir, resetMarkerFile)
	var want string
	switch {
	case s.cfg.ClusterResetRestorePath != "":
		sum, err := fileSHA256(s.cfg.ClusterResetRestorePath)
		if err != nil {
			return "", fmt.Errorf("cluster reset: %w", err)
		}
		want = "restore " + sum
	case s.cfg.ClusterReset:
		want = forceNewCluster
	default:
		if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("cluster reset marker: %w", err)
		}
		return "", nil
	}
	if data, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(data)) == want && hadData {
		s.log.Warn("this cluster reset was done on an earlier start; not doing it again (start without --cluster-reset)",
			"restorePath", s.cfg.ClusterResetRestorePath)
		return "", nil
	}
	return want, nil
}

// restoreSnapshot replaces the member's data with the snapshot at
// ClusterResetRestorePath, moving any old data aside.
func (s *Server) restoreSnapshot(dir, name, peerURL string) error {
	path := s.cfg.ClusterResetRestorePath
	if err := snapshot.Verify(path); err != nil {
		return fmt.Errorf("cluster reset: %w", err)
	}
	if _, err := os.Stat(dir); err == nil {
		old := fmt.Sprintf("%s-old-%d", dir, time.Now().Unix())
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("cluster reset: move old etcd data aside: %w", err)
		}
		s.log.Warn("moved old etcd data aside", "path", old)
	}
	if err := snapshot.Restore(path, dir, name, peerURL); err != nil {
		return fmt.Errorf("cluster reset: %w", err)
	}
	s.log.Warn("restored etcd from a snapshot as a new single-member cluster; other servers must delete their etcd data and join again",
		"path", path, "member", name)
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
