// Package snapshot saves, lists, prunes and restores etcd snapshots: the
// cluster's backup. A snapshot is what etcd's Snapshot RPC streams, the
// member's bbolt database followed by its SHA-256, kept as
// <dir>/<name>-<unix milliseconds>.db, so a directory listing sorts by
// name and then by age and the file checks itself on restore.
package snapshot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Ext ends every snapshot file's name.
const Ext = ".db"

// DirName is where a server keeps its snapshots, under its data dir.
const DirName = "snapshots"

// namePattern is what a snapshot may be called: it becomes part of a
// file name, so no separators, and it starts with a letter or digit so it
// cannot hide as a dot file.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// filePattern splits a snapshot's file name into its name and time.
var filePattern = regexp.MustCompile(`^(.+)-([0-9]{13,})\.db$`)

// Info describes one snapshot file.
type Info struct {
	// Name is the name it was saved under; Path the file.
	Name, Path string
	// Created is when it was taken (to the millisecond, from its name).
	Created time.Time
	// Size is the file's size in bytes.
	Size int64
}

// Save streams a snapshot of the member c talks to into
// dir/<name>-<now in unix ms>.db and returns it. The file appears only
// once complete, synced and checked against the hash etcd sent with it,
// so a crash or a broken stream never leaves a snapshot that looks good.
func Save(ctx context.Context, c *clientv3.Client, dir, name string, now time.Time) (Info, error) {
	if !namePattern.MatchString(name) {
		return Info{}, fmt.Errorf("snapshot: name %q: want letters, digits, '.', '_' or '-'", name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("snapshot: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%d%s", name, now.UnixMilli(), Ext))
	if _, err := os.Stat(path); err == nil {
		return Info{}, fmt.Errorf("snapshot: %s already exists", path)
	}
	rc, err := c.Snapshot(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: start: %w", err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, ".part-*")
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	size, err := io.Copy(tmp, rc)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Info{}, fmt.Errorf("snapshot: receive: %w", err)
	}
	if err := Verify(tmp.Name()); err != nil {
		return Info{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Info{}, fmt.Errorf("snapshot: %w", err)
	}
	return Info{Name: name, Path: path, Created: time.UnixMilli(now.UnixMilli()), Size: size}, nil
}

// ErrNoHash means a file does not end with the hash etcd sends with a
// snapshot: it is a database copied by hand, or truncated.
var ErrNoHash = errors.New("snapshot: no integrity hash")

// hasHash reports whether a file of size bytes is a database followed by
// a SHA-256: bbolt files are whole pages, a multiple of 512 bytes.
func hasHash(size int64) bool { return size%512 == sha256.Size }

// Verify checks that the file at path is a snapshot whose hash matches
// its database.
func Verify(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if !hasHash(fi.Size()) {
		return fmt.Errorf("%w: %s (%d bytes)", ErrNoHash, path, fi.Size())
	}
	_, err = copyVerified(io.Discard, f, fi.Size())
	return err
}

// copyVerified copies the database part of a snapshot of size bytes from
// r to w and checks it against the hash that follows it.
func copyVerified(w io.Writer, r io.Reader, size int64) (int64, error) {
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, size-sha256.Size))
	if err != nil {
		return n, fmt.Errorf("snapshot: read: %w", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, want); err != nil {
		return n, fmt.Errorf("snapshot: read hash: %w", err)
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return n, fmt.Errorf("snapshot: hash mismatch: the file is corrupt (database %x, recorded %x)", got, want)
	}
	return n, nil
}

// List returns the snapshots in dir, oldest first; a missing dir has none.
func List(dir string) ([]Info, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: list %s: %w", dir, err)
	}
	var out []Info
	for _, e := range entries {
		m := filePattern.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		ms, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, Info{Name: m[1], Path: filepath.Join(dir, e.Name()), Created: time.UnixMilli(ms), Size: fi.Size()})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Prune deletes the oldest snapshots called name in dir until keep are
// left, and returns those it deleted. Snapshots of other names are not
// touched: an operator's on-demand snapshot outlives the schedule's.
func Prune(dir, name string, keep int) ([]Info, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	var mine []Info
	for _, s := range all {
		if s.Name == name {
			mine = append(mine, s)
		}
	}
	var deleted []Info
	for len(mine) > max(keep, 0) {
		if err := os.Remove(mine[0].Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return deleted, fmt.Errorf("snapshot: prune: %w", err)
		}
		deleted, mine = append(deleted, mine[0]), mine[1:]
	}
	return deleted, nil
}
