package snapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiffhq/skiff/internal/etcd"
)

// member starts an embedded etcd member called name on dataDir, with
// peer URL peerURL (any free port when empty).
func member(t *testing.T, ctx context.Context, name, dataDir, peerURL string) *etcd.Server {
	t.Helper()
	if peerURL == "" {
		peerURL = "http://127.0.0.1:0"
	}
	s, err := etcd.New(etcd.Config{
		Name:            name,
		DataDir:         dataDir,
		ListenClientURL: "http://127.0.0.1:0",
		ListenPeerURL:   peerURL,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestSaveRestore takes a snapshot of a member with data, restores it
// into a fresh directory, and starts a new cluster there: every key is
// back at its revision, the old member is forgotten, and the restored
// member takes writes and survives a restart.
func TestSaveRestore(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := member(t, ctx, "old", filepath.Join(t.TempDir(), "etcd"), "")
	c := src.Client()
	want := map[string]int64{}
	for i := range 50 {
		key := fmt.Sprintf("/registry/things/%02d", i)
		resp, err := c.Put(ctx, key, strings.Repeat("x", i))
		if err != nil {
			t.Fatal(err)
		}
		want[key] = resp.Header.Revision
	}
	lease, err := c.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/leased", "v", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), DirName)
	begin := time.Now()
	info, err := Save(ctx, c, dir, "on-demand", time.Now())
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	t.Logf("saved %d bytes in %v", info.Size, time.Since(begin))
	src.Close()
	// What Save returns, List finds.
	list, err := List(dir)
	if err != nil || len(list) != 1 || list[0].Path != info.Path || list[0].Name != "on-demand" || list[0].Size != info.Size {
		t.Fatalf("List = %+v, %v; want the saved %+v", list, err, info)
	}
	if err := Verify(info.Path); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	restored := filepath.Join(t.TempDir(), "etcd")
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	begin = time.Now()
	if err := Restore(info.Path, restored, "new", peerURL); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restored in %v", time.Since(begin))
	for round := range 2 { // the first start founds the cluster; a restart replays its log
		t.Run(fmt.Sprintf("start %d", round), func(t *testing.T) {
			s := member(t, ctx, "new", restored, peerURL)
			defer s.Close()
			rc := s.Client()
			for key, rev := range want {
				resp, err := rc.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != rev {
					t.Fatalf("%s after restore = %v, want one key at revision %d", key, resp.Kvs, rev)
				}
			}
			if resp, err := rc.Get(ctx, "/leased"); err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(lease.ID) {
				t.Errorf("leased key after restore = %v, %v; want it under lease %x", resp, err, lease.ID)
			}
			members, err := etcd.ListMembers(ctx, rc)
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != 1 || members[0].Name != "new" {
				t.Errorf("members = %+v, want only the new member", members)
			}
			if round == 0 {
				resp, err := rc.Put(ctx, "/after", "restore")
				if err != nil {
					t.Fatalf("write after restore: %v", err)
				}
				if resp.Header.Revision <= want["/registry/things/49"] {
					t.Errorf("revision after restore = %d, want past the snapshot's", resp.Header.Revision)
				}
			} else if resp, err := rc.Get(ctx, "/after"); err != nil || len(resp.Kvs) != 1 {
				t.Errorf("write made after the restore lost on restart: %v, %v", resp, err)
			}
		})
	}
}

func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := member(t, ctx, "m", filepath.Join(t.TempDir(), "etcd"), "")
	if _, err := s.Client().Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	good, err := Save(ctx, s.Client(), t.TempDir(), "good", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good.Path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, b []byte) string {
		p := filepath.Join(t.TempDir(), "snap.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		file    func(t *testing.T) string
		target  func(t *testing.T) string
		wantErr string
	}{
		{name: "flipped byte", file: func(t *testing.T) string {
			b := append([]byte(nil), data...)
			b[len(b)/2] ^= 0xff
			return write(t, b)
		}, wantErr: "hash mismatch"},
		{name: "truncated", file: func(t *testing.T) string { return write(t, data[:len(data)-1000]) }, wantErr: "no integrity hash"},
		{name: "bare database", file: func(t *testing.T) string { return write(t, data[:len(data)-32]) }, wantErr: "no integrity hash"},
		{name: "hash of garbage", file: func(t *testing.T) string {
			garbage := make([]byte, 4096)
			sum := sha256.Sum256(garbage)
			return write(t, append(garbage, sum[:]...))
		}, wantErr: "not an etcd database"},
		{name: "short file", file: func(t *testing.T) string { return write(t, []byte("hello")) }, wantErr: "no integrity hash"},
		{name: "missing", file: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.db") }, wantErr: "no such file"},
		{name: "target not empty", file: func(t *testing.T) string { return good.Path }, target: func(t *testing.T) string {
			d := t.TempDir()
			if err := os.WriteFile(filepath.Join(d, "x"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return d
		}, wantErr: "not empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "etcd")
			if tc.target != nil {
				target = tc.target(t)
			}
			err := Restore(tc.file(t), target, "m", "http://127.0.0.1:2380")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Restore error = %v, want containing %q", err, tc.wantErr)
			}
			if tc.target == nil {
				if _, err := os.Stat(filepath.Join(target, "member")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed restore left %s/member behind", target)
				}
			}
		})
	}
	t.Run("verify flags a corrupt file", func(t *testing.T) {
		b := append([]byte(nil), data...)
		b[100] ^= 1
		if err := Verify(write(t, b)); err == nil {
			t.Error("Verify passed a corrupt snapshot")
		}
		if err := Verify(write(t, data[:len(data)-32])); !errors.Is(err, ErrNoHash) {
			t.Errorf("Verify of a bare database: err = %v, want ErrNoHash", err)
		}
	})
	t.Run("bad name", func(t *testing.T) {
		for _, name := range []string{"", "../x", "a/b", ".hidden"} {
			if _, err := Save(ctx, s.Client(), t.TempDir(), name, time.Now()); err == nil {
				t.Errorf("Save accepted name %q", name)
			}
		}
	})
}

func TestPrune(t *testing.T) {
	t.Parallel()
	base := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name       string
		files      []string // name@offset-seconds
		keep       int
		wantLeft   []string
		wantPruned int
	}{
		{name: "keeps the newest", files: []string{"s@1", "s@3", "s@2", "s@5", "s@4"}, keep: 2, wantLeft: []string{"s@4", "s@5"}, wantPruned: 3},
		{name: "other names untouched", files: []string{"s@1", "on-demand@2", "s@3"}, keep: 1, wantLeft: []string{"on-demand@2", "s@3"}, wantPruned: 1},
		{name: "fewer than keep", files: []string{"s@1"}, keep: 5, wantLeft: []string{"s@1"}},
		{name: "keep zero", files: []string{"s@1", "s@2"}, keep: 0, wantLeft: nil, wantPruned: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, f := range tc.files {
				n, off, _ := strings.Cut(f, "@")
				var sec int64
				fmt.Sscan(off, &sec)
				p := filepath.Join(dir, fmt.Sprintf("%s-%d%s", n, base.Add(time.Duration(sec)*time.Second).UnixMilli(), Ext))
				if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// Not snapshots: never listed, never pruned.
			for _, other := range []string{"notes.txt", ".part-123"} {
				if err := os.WriteFile(filepath.Join(dir, other), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pruned, err := Prune(dir, "s", tc.keep)
			if err != nil {
				t.Fatal(err)
			}
			if len(pruned) != tc.wantPruned {
				t.Errorf("pruned %d, want %d", len(pruned), tc.wantPruned)
			}
			left, err := List(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range left {
				got = append(got, fmt.Sprintf("%s@%d", s.Name, s.Created.Sub(base)/time.Second))
			}
			if strings.Join(got, ",") != strings.Join(tc.wantLeft, ",") {
				t.Errorf("left %v, want %v", got, tc.wantLeft)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != len(tc.wantLeft)+2 {
				t.Errorf("%d files in dir, want %d snapshots and 2 others", len(entries), len(tc.wantLeft))
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
