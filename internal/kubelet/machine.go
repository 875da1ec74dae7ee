package kubelet

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Machine is what the kubelet reports about the host it runs on. The real
// agent reads it from the kernel; hollow nodes make one up, so that a
// thousand of them report the same plausible machine.
type Machine interface {
	// Capacity is the node's total cpu, memory, ephemeral-storage and pods.
	Capacity() corev1.ResourceList
	// Info fills the parts of NodeSystemInfo that come from the host.
	Info() corev1.NodeSystemInfo
	// Pressure reports memory, disk and PID pressure as upstream's
	// default hard eviction thresholds would see them.
	Pressure() (memory, disk, pid bool)
}

// MaxPods is the pod capacity every node reports, upstream's default.
const MaxPods = 110

// hostMachine reads the machine the process runs on.
type hostMachine struct {
	// fsPath is where the kubelet keeps pod data: its filesystem is the
	// node's ephemeral storage.
	fsPath string
}

// HostMachine reports the machine the process runs on; fsPath's filesystem
// is the node's ephemeral storage.
func HostMachine(fsPath string) Machine { return hostMachine{fsPath: fsPath} }

func (m hostMachine) Capacity() corev1.ResourceList {
	out := corev1.ResourceList{
		corev1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourcePods: *resource.NewQuantity(MaxPods, resource.DecimalSI),
	}
	if total, _, err := meminfo(); err == nil {
		out[corev1.ResourceMemory] = *resource.NewQuantity(total, resource.BinarySI)
	}
	var st unix.Statfs_t
	if unix.Statfs(m.fsPath, &st) == nil {
		out[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(st.Blocks)*st.Bsize, resource.BinarySI)
	}
	return out
}

func (m hostMachine) Info() corev1.NodeSystemInfo {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	return corev1.NodeSystemInfo{
		MachineID:       readTrim("/etc/machine-id"),
		SystemUUID:      readTrim("/sys/class/dmi/id/product_uuid"),
		BootID:          readTrim("/proc/sys/kernel/random/boot_id"),
		KernelVersion:   unix.ByteSliceToString(uts.Release[:]),
		OSImage:         osImage(),
		OperatingSystem: goruntime.GOOS,
		Architecture:    goruntime.GOARCH,
	}
}

// Eviction thresholds upstream's kubelet uses by default; we report
// pressure at the same points but do not evict.
const (
	memoryAvailableThreshold = 100 << 20 // memory.available<100Mi
	nodefsAvailablePercent   = 10        // nodefs.available<10%
	pidAvailablePercent      = 10
)

func (m hostMachine) Pressure() (memory, disk, pid bool) {
	if _, avail, err := meminfo(); err == nil {
		memory = avail < memoryAvailableThreshold
	}
	var st unix.Statfs_t
	if unix.Statfs(m.fsPath, &st) == nil && st.Blocks > 0 {
		disk = st.Bavail*100/st.Blocks < nodefsAvailablePercent
	}
	if max, err := strconv.Atoi(readTrim("/proc/sys/kernel/pid_max")); err == nil && max > 0 {
		if n, err := countProcesses(); err == nil {
			pid = (max-n)*100/max < pidAvailablePercent
		}
	}
	return memory, disk, pid
}

// meminfo returns MemTotal and MemAvailable in bytes.
func meminfo() (total, available int64, err error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("read meminfo: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			available = v << 10
		}
	}
	return total, available, nil
}

func countProcesses() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n, nil
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func readTrim(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}
