package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// childByName returns the pid of pid's child whose command name is comm,
// or 0 if it has none. The kernel lists children per thread, so every
// thread's list is read.
func childByName(pid int, comm string) (int, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		for _, field := range strings.Fields(string(data)) {
			c, err := strconv.Atoi(field)
			if err != nil {
				continue
			}
			if name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); err == nil && strings.TrimSpace(string(name)) == comm {
				return c, nil
			}
		}
	}
	return 0, nil
}

// shimsOf returns the pids of the containerd shims serving a containerd
// whose state lies under dir: a shim names its containerd's socket on its
// command line. Shims are reparented away from containerd, so only their
// command line ties them to it.
func shimsOf(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if slices.ContainsFunc(args[1:], func(a string) bool { return strings.HasPrefix(a, dir+"/") }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder returns the mount points at or below dir in this mount
// namespace, deepest first, so that unmounting them in order works.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		// Octal escapes (\040 for a space) do not occur in our temp paths.
		if mp := fields[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out, sc.Err()
}

// unmountUnder detaches every mount at or below dir and returns those it
// found: a temp dir must not be removed through a live mount.
func unmountUnder(dir string) ([]string, error) {
	mps, err := mountsUnder(dir)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return mps, errors.Join(errs...)
}

// loadAverage is the 1-minute load average, or "?".
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
