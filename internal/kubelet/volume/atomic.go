package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// file is one entry of a volume's payload: its bytes and permission bits.
type file struct {
	data []byte
	mode int32
}

// dataLink names the symlink that points at the current timestamped dir.
// Users see key -> ..data/key, so swapping ..data by one rename switches
// every key at once; applications watching ..data (as many do for upstream
// Kubernetes) see one change per update.
const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
	maxPathLen  = 4096
	maxNameLen  = 255
)

// writeAtomic makes dir show exactly payload, laid out as upstream's atomic
// writer does:
//
//	dir/..2024_01_02_15_04_05.123456789/<path>   the files
//	dir/..data -> ..2024_01_02_15_04_05.123456789
//	dir/<top>  -> ..data/<top>                   one per top-level name
//
// It reports whether it wrote anything. When the files under ..data
// already match payload (content and mode) it only repairs missing
// top-level links, so unchanged volumes cost a few reads per sync.
func writeAtomic(dir string, payload map[string]file) (bool, error) {
	clean := make(map[string]file, len(payload))
	for p, f := range payload {
		if err := validatePayloadPath(p); err != nil {
			return false, err
		}
		clean[path.Clean(p)] = f
	}
	current, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s link: %w", dataLink, err)
	}
	var old map[string]bool
	if current != "" {
		old, err = listFiles(filepath.Join(dir, current))
		if err != nil {
			return false, err
		}
		same, err := sameFiles(filepath.Join(dir, current), old, clean)
		if err != nil {
			return false, err
		}
		if same {
			return false, linkTopLevel(dir, clean)
		}
	}

	tsDir, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, fmt.Errorf("create timestamped dir: %w", err)
	}
	if err := writeFiles(tsDir, clean); err != nil {
		return false, errors.Join(err, os.RemoveAll(tsDir))
	}
	tmp := filepath.Join(dir, dataLinkTmp)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove stale %s: %w", dataLinkTmp, err)
	}
	if err := os.Symlink(filepath.Base(tsDir), tmp); err != nil {
		return false, fmt.Errorf("create %s link: %w", dataLinkTmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataLink)); err != nil {
		return false, fmt.Errorf("swap %s link: %w", dataLink, err)
	}
	if err := linkTopLevel(dir, clean); err != nil {
		return true, err
	}
	return true, removeStale(dir, filepath.Base(tsDir), old, clean)
}

// validatePayloadPath rejects paths that could leave the volume or clash
// with the writer's own "..name" entries; the messages follow upstream's.
func validatePayloadPath(p string) error {
	if p == "" || path.Clean(p) == "." {
		return fmt.Errorf("invalid path: must not be empty: %q", p)
	}
	if path.IsAbs(p) {
		return fmt.Errorf("invalid path: must be relative path: %s", p)
	}
	if len(p) > maxPathLen {
		return fmt.Errorf("invalid path: must be less than or equal to %d characters", maxPathLen)
	}
	parts := strings.Split(p, "/")
	for _, part := range parts {
		if part == ".." {
			return fmt.Errorf("invalid path: must not contain '..': %s", p)
		}
		if len(part) > maxNameLen {
			return fmt.Errorf("invalid path: filenames must be less than or equal to %d characters", maxNameLen)
		}
	}
	if strings.HasPrefix(parts[0], "..") {
		return fmt.Errorf("invalid path: must not start with '..': %s", p)
	}
	return nil
}

// listFiles returns the regular files under dir as slash-separated paths
// relative to dir.
func listFiles(dir string) (map[string]bool, error) {
	files := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		// A dangling ..data (say, after a crash mid-cleanup): rewrite.
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list current volume files: %w", err)
	}
	return files, nil
}

func sameFiles(dir string, have map[string]bool, want map[string]file) (bool, error) {
	if len(have) != len(want) {
		return false, nil
	}
	for p, f := range want {
		if !have[p] {
			return false, nil
		}
		full := filepath.Join(dir, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if err != nil {
			return false, fmt.Errorf("stat current file: %w", err)
		}
		if fi.Mode().Perm() != fs.FileMode(f.mode)&fs.ModePerm {
			return false, nil
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return false, fmt.Errorf("read current file: %w", err)
		}
		if !bytes.Equal(data, f.data) {
			return false, nil
		}
	}
	return true, nil
}

func writeFiles(dir string, files map[string]file) error {
	// MkdirTemp makes 0700; containers running as other users must read.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod timestamped dir: %w", err)
	}
	for p, f := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("create dir for %s: %w", p, err)
		}
		mode := fs.FileMode(f.mode) & fs.ModePerm
		if err := os.WriteFile(full, f.data, mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		// WriteFile's mode is filtered by the umask; the user asked for this one.
		if err := os.Chmod(full, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return nil
}

func topLevel(p string) string {
	top, _, _ := strings.Cut(p, "/")
	return top
}

// linkTopLevel creates the user-visible top-level symlinks that are missing.
func linkTopLevel(dir string, files map[string]file) error {
	for p := range files {
		top := topLevel(p)
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", top, err)
		}
		if err := os.Symlink(path.Join(dataLink, top), link); err != nil {
			return fmt.Errorf("link %s: %w", top, err)
		}
	}
	return nil
}

// removeStale drops top-level links whose names left the payload, and every
// "..name" dir except the current one: the previous payload and any left
// behind by a crash between writing and swapping.
func removeStale(dir, current string, old map[string]bool, files map[string]file) error {
	keep := map[string]bool{}
	for p := range files {
		keep[topLevel(p)] = true
	}
	var errs []error
	for p := range old {
		top := topLevel(p)
		if keep[top] {
			continue
		}
		link := filepath.Join(dir, top)
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if err := os.Remove(link); err != nil {
				errs = append(errs, fmt.Errorf("remove stale link %s: %w", top, err))
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list volume dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "..") || name == dataLink || name == current || !e.IsDir() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, fmt.Errorf("remove old payload %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
