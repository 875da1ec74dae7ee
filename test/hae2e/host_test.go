package hae2e

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The hosts' network: a bridge in this namespace, which the test itself
// reaches the hosts through, and one veth pair per host.
const (
	bridgeName = "skha0"
	bridgeIP   = "10.98.0.1"
)

// host is one machine of the cluster: a network namespace with its own
// address, joined to the others through a veth pair on the bridge.
type host struct {
	// name is the host's short name (s1, n1…).
	name string
	ip   string
}

// netns is the network namespace's name, under /run/netns.
func (h *host) netns() string { return "skiff-ha-" + h.name }

// veth is the bridge's end of the host's link: taking it down cuts the
// host off.
func (h *host) veth() string { return "skha-" + h.name }

func makeBridge() error {
	removeBridge()
	return run([][]string{
		{"ip", "link", "add", bridgeName, "type", "bridge"},
		{"ip", "addr", "add", bridgeIP + "/24", "dev", bridgeName},
		{"ip", "link", "set", bridgeName, "up"},
	})
}

func removeBridge() { _ = exec.Command("ip", "link", "del", bridgeName).Run() }

// create makes the host's namespace and plugs it into the bridge. What
// a crashed earlier run left in a namespace of the same name is killed
// first, or it would run on, unreachable, once the name is gone.
func (h *host) create() error {
	if _, err := h.killAll(); err != nil {
		return err
	}
	h.remove()
	ns := h.netns()
	err := run([][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", h.veth(), "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", h.veth(), "master", bridgeName, "up"},
		{"ip", "netns", "exec", ns, "ip", "addr", "add", h.ip + "/24", "dev", "eth0"},
		{"ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"},
		{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
	})
	if err != nil {
		h.remove()
	}
	return err
}

// remove deletes the host's link and namespace. The namespace itself
// lives on until its last process and mount are gone.
func (h *host) remove() {
	_ = exec.Command("ip", "link", "del", h.veth()).Run()
	_ = exec.Command("ip", "netns", "del", h.netns()).Run()
}

// setLink plugs the host's cable in or pulls it out.
func (h *host) setLink(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return run([][]string{{"ip", "link", "set", h.veth(), state}})
}

// processes returns every process of the host: those in its network
// namespace (the skiff process, its containerd and the shims) and all
// their descendants (the containers, which live in namespaces of their
// own).
func (h *host) processes() ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat("/run/netns/"+h.netns(), &want); err != nil {
		return nil, fmt.Errorf("host %s: %w", h.name, &fs.PathError{Op: "stat", Path: "/run/netns/" + h.netns(), Err: err})
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	var roots []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			roots = append(roots, pid)
		}
		if ppid, ok := parentPID(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	seen := map[int]bool{}
	for len(roots) > 0 {
		pid := roots[0]
		roots = roots[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		roots = append(roots, children[pid]...)
	}
	return out, nil
}

// named returns the host's processes whose command is comm.
func (h *host) named(comm string) []int {
	pids, _ := h.processes()
	return slices.DeleteFunc(pids, func(pid int) bool {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		return err != nil || strings.TrimSpace(string(data)) != comm
	})
}

// parentPID reads a process's parent from /proc/PID/stat, whose second
// field (the command) may hold spaces and parentheses.
func parentPID(pid int) (int, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// killAll SIGKILLs every process of the host, as a machine losing power
// would stop them, waits until they are gone, and returns the cgroups its
// containers ran in, for removal once they are empty. A host whose
// namespace is already gone has nothing left to kill.
func (h *host) killAll() ([]string, error) {
	var cgroups []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := h.processes()
		if errors.Is(err, fs.ErrNotExist) {
			return cgroups, nil
		}
		if err != nil {
			return cgroups, err
		}
		// Gone once only zombies are left, which their parents reap.
		pids = slices.DeleteFunc(pids, zombie)
		if len(pids) == 0 {
			return cgroups, nil
		}
		if time.Now().After(deadline) {
			return cgroups, fmt.Errorf("host %s: processes %v survive SIGKILL", h.name, pids)
		}
		for _, pid := range pids {
			if cg := podCgroup(pid); cg != "" {
				cgroups = append(cgroups, cg)
			}
			// Stopped first, so none reacts to another's death (a
			// process forked meanwhile is caught by the next round).
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // the pace of the rounds, not a wait for anything
	}
}

// zombie says whether a process has exited and awaits its parent's wait.
func zombie(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // gone
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// podCgroup is the cgroup (v2) of a process that runs in a pod, or "".
func podCgroup(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(path, "/kubepods/") {
			return path
		}
	}
	return ""
}

// removeCgroups removes the (empty) cgroups of killed containers and
// their pods' cgroups: runc leaves a pod's cgroup for the kubelet, which
// here is dead too.
func removeCgroups(paths []string) {
	var dirs []string
	for _, p := range paths {
		for d := p; strings.HasPrefix(d, "/kubepods/") && strings.Contains(d, "/pod"); d = filepath.Dir(d) {
			dirs = append(dirs, d)
		}
	}
	// Deepest first: a cgroup with children cannot be removed.
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	// In every hierarchy: the unified one at the top or, on a hybrid
	// host, beside the v1 controllers.
	roots := []string{"/sys/fs/cgroup"}
	if entries, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range entries {
			roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	for _, d := range slices.Compact(dirs) {
		for _, root := range roots {
			_ = unix.Rmdir(filepath.Join(root, d))
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first: a killed
// containerd leaves its containers' root filesystems and its pods'
// network namespaces mounted there.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range points {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func run(cmds [][]string) error {
	for _, args := range cmds {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
