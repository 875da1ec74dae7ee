package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/etcdserver/cindex"
	"go.etcd.io/etcd/server/v3/storage/backend"
	"go.etcd.io/etcd/server/v3/storage/schema"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/skiffhq/skiff/internal/etcd"
)

// Restore prepares dataDir, an etcd data directory that must not exist
// or be empty, to start as the only member of a new cluster holding the
// snapshot at path: every key at its revision and its leases, none of
// the old cluster's members. name and peerURL must be those the member
// will start with, since they make its ID.
//
// The result is what a member of a new single-member cluster would have
// after applying its founding entry: the database, the write-ahead log
// holding that entry, and a raft snapshot at it. The file must carry the
// hash Save's stream ends with, and match it: a database without one (a
// truncated file, or a member's database copied by hand) is refused with
// ErrNoHash rather than restored with whatever it lacks.
func Restore(path, dataDir, name, peerURL string) error {
	if err := emptyDir(dataDir); err != nil {
		return err
	}
	urls, err := types.NewURLsMap(name + "=" + peerURL)
	if err != nil {
		return fmt.Errorf("snapshot: restore: member %s=%s: %w", name, peerURL, err)
	}
	lg := zap.NewNop()
	cl, err := membership.NewClusterFromURLsMap(lg, etcd.ClusterToken, urls)
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	memberDir := filepath.Join(dataDir, "member")
	dbPath := filepath.Join(memberDir, "snap", "db")
	if err := copyDB(path, dbPath); err != nil {
		os.RemoveAll(memberDir)
		return err
	}
	if err := refound(lg, cl, memberDir, dbPath); err != nil {
		os.RemoveAll(memberDir)
		return err
	}
	return nil
}

// copyDB copies the database in the snapshot at path to dbPath, checking
// its hash when it has one.
func copyDB(path, dbPath string) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	if !hasHash(fi.Size()) {
		return fmt.Errorf("%w: %s (%d bytes)", ErrNoHash, path, fi.Size())
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	db, err := os.OpenFile(dbPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	_, err = copyVerified(db, src, fi.Size())
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot: restore %s: %w", path, err)
	}
	return nil
}

// refound makes the database at dbPath, and the log beside it, those of
// cl's only member right after cl was founded.
func refound(lg *zap.Logger, cl *membership.RaftCluster, memberDir, dbPath string) (err error) {
	// bbolt panics on a file that is not a database; say so instead.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("snapshot: restore: not an etcd database: %v", r)
		}
	}()
	be := backend.NewDefaultBackend(lg, dbPath)
	defer be.Close()
	if err := schema.Validate(lg, be.ReadTx()); err != nil {
		return fmt.Errorf("snapshot: restore: not an etcd database: %w", err)
	}
	mb := schema.NewMembershipBackend(lg, be)
	if err := mb.TrimMembershipFromBackend(); err != nil {
		return fmt.Errorf("snapshot: restore: forget members: %w", err)
	}
	cl.SetBackend(mb)
	members := cl.Members()
	if len(members) != 1 {
		return fmt.Errorf("snapshot: restore: want one member, have %d", len(members))
	}
	self := members[0]
	cl.AddMember(self, membership.ApplyBoth)

	// The founding entry, index 1 of term 1: this member joins. It is
	// committed and, through the raft snapshot at the same index,
	// already applied, which the database says next.
	const index, term = 1, 1
	memberJSON, err := json.Marshal(self)
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	cc, err := proto.Marshal(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(self.ID)), Context: memberJSON})
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	meta, err := proto.Marshal(&etcdserverpb.Metadata{NodeID: new(uint64(self.ID)), ClusterID: new(uint64(cl.ID()))})
	if err != nil {
		return fmt.Errorf("snapshot: restore: %w", err)
	}
	w, err := wal.Create(lg, filepath.Join(memberDir, "wal"), meta)
	if err != nil {
		return fmt.Errorf("snapshot: restore: create log: %w", err)
	}
	defer w.Close()
	entry := &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Term: new(uint64(term)), Index: new(uint64(index)), Data: cc}
	hs := &raftpb.HardState{Term: new(uint64(term)), Vote: new(uint64(self.ID)), Commit: new(uint64(index))}
	if err := w.Save(hs, []*raftpb.Entry{entry}); err != nil {
		return fmt.Errorf("snapshot: restore: write log: %w", err)
	}
	conf := &raftpb.ConfState{Voters: []uint64{uint64(self.ID)}}
	if err := snap.New(lg, filepath.Join(memberDir, "snap")).SaveSnap(&raftpb.Snapshot{
		Data:     etcdserver.GetMembershipInfoInV2Format(lg, cl),
		Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(index)), Term: new(uint64(term)), ConfState: conf},
	}); err != nil {
		return fmt.Errorf("snapshot: restore: write raft snapshot: %w", err)
	}
	if err := w.SaveSnapshot(&walpb.Snapshot{Index: new(uint64(index)), Term: new(uint64(term)), ConfState: conf}); err != nil {
		return fmt.Errorf("snapshot: restore: write log: %w", err)
	}
	cindex.UpdateConsistentIndexForce(be.BatchTx(), index, term)
	return nil
}

// emptyDir insists that dir does not exist or holds nothing.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot: restore into %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("snapshot: restore into %s: directory is not empty", dir)
	}
	return nil
}
