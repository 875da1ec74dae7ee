package kubelet

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

// qosClass is the pod's quality of service class, computed as upstream:
// Guaranteed when every container has equal cpu and memory requests and
// limits, BestEffort when none has any, Burstable otherwise.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	// Zero quantities count as unset, as upstream: "cpu: 0" asks for
	// nothing and does not make a pod Burstable.
	counts := func(name corev1.ResourceName, q resource.Quantity) bool {
		return (name == corev1.ResourceCPU || name == corev1.ResourceMemory) && q.Sign() > 0
	}
	for _, c := range allContainers(pod) {
		for name, q := range c.Resources.Requests {
			if counts(name, q) {
				add(requests, name, q)
			}
		}
		have := 0
		for name, q := range c.Resources.Limits {
			if counts(name, q) {
				add(limits, name, q)
				have++
			}
		}
		if have < 2 {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	// Requests equal to limits: the API server defaults missing requests
	// from limits, so a pod reaching us with limits only is Burstable.
	if guaranteed && len(limits) == 2 && len(requests) == 2 {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func add(l corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
	cur := l[name]
	cur.Add(q)
	l[name] = cur
}

// podCgroup is the pod's cgroup parent, laid out as upstream's cgroupfs
// driver does: /kubepods/pod<uid> for Guaranteed pods,
// /kubepods/<qos>/pod<uid> for the others.
func (k *Kubelet) podCgroup(pod *corev1.Pod) string {
	qos := qosClass(pod)
	if qos == corev1.PodQOSGuaranteed {
		return k.cfg.CgroupRoot + "/pod" + string(pod.UID)
	}
	return k.cfg.CgroupRoot + "/" + strings.ToLower(string(qos)) + "/pod" + string(pod.UID)
}

// removePodCgroups removes the pod's cgroup under every QoS class: the
// pod's spec, which decides the class, is unknown for an orphan found in
// the runtime, and a cgroup missed now would stay for good.
func (k *Kubelet) removePodCgroups(uid types.UID) error {
	var errs []error
	for _, class := range []string{"", "/burstable", "/besteffort"} {
		if err := removePodCgroup(k.cfg.CgroupRoot + class + "/pod" + string(uid)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupFS is where cgroup hierarchies are mounted.
var cgroupFS = "/sys/fs/cgroup"

// removePodCgroup removes the pod's cgroup from every hierarchy: runc
// creates the pod level when it starts the sandbox but never removes it.
// Its container cgroups must already be gone.
func removePodCgroup(parent string) error {
	var errs []error
	dirs := []string{filepath.Join(cgroupFS, parent)} // cgroup v2, unified
	if entries, err := os.ReadDir(cgroupFS); err == nil {
		for _, e := range entries {
			dirs = append(dirs, filepath.Join(cgroupFS, e.Name(), parent)) // v1 hierarchies
		}
	}
	for _, d := range dirs {
		if err := removeCgroupTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes an empty cgroup and its empty children, deepest
// first (cgroup directories are removed with rmdir, never unlinked).
func removeCgroupTree(dir string) error {
	var sub []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			sub = append(sub, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for i := len(sub) - 1; i >= 0; i-- {
		if err := os.Remove(sub[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
