package server

import (
	"context"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiffhq/skiff/internal/etcd/snapshot"
)

// DefaultSnapshotRetention is how many scheduled snapshots a server keeps
// when Config.EtcdSnapshotRetention is zero.
const DefaultSnapshotRetention = 5

// ScheduledSnapshotPrefix starts the name of each scheduled snapshot; the
// member name follows, so servers sharing a snapshot directory (a network
// mount) keep their own retention.
const ScheduledSnapshotPrefix = "etcd-snapshot-"

// SnapshotDir is where the server with data directory dataDir keeps etcd
// snapshots.
func SnapshotDir(dataDir string) string { return filepath.Join(dataDir, snapshot.DirName) }

// runSnapshots takes a snapshot of the local member every
// EtcdSnapshotInterval and keeps the newest EtcdSnapshotRetention, until
// ctx ends. Every server does this for its own member: a snapshot holds
// the whole cluster, so any surviving server's is a backup.
func (s *Server) runSnapshots(ctx context.Context, c *clientv3.Client, member string) {
	if s.cfg.EtcdSnapshotInterval <= 0 {
		return
	}
	keep := s.cfg.EtcdSnapshotRetention
	if keep <= 0 {
		keep = DefaultSnapshotRetention
	}
	dir := SnapshotDir(s.cfg.DataDir)
	name := ScheduledSnapshotPrefix + member
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(s.cfg.EtcdSnapshotInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			start := time.Now()
			info, err := snapshot.Save(ctx, c, dir, name, start)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("scheduled etcd snapshot", "err", err)
				}
				continue
			}
			s.log.Info("saved etcd snapshot", "path", info.Path, "bytes", info.Size, "took", time.Since(start).Round(time.Millisecond))
			pruned, err := snapshot.Prune(dir, name, keep)
			if err != nil {
				s.log.Error("prune etcd snapshots", "err", err)
			}
			for _, p := range pruned {
				s.log.Info("deleted old etcd snapshot", "path", p.Path)
			}
		}
	}()
}
