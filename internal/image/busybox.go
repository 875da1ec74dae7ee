package image

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyboxRef is the reference under which agents provide the Busybox image.
const BusyboxRef = "skiff.local/busybox:1"

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// busyboxPath is the PATH of a Debian root user, so that applets resolve
// wherever a script expects them.
const busyboxPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Accounts for root and the conventional unprivileged 65534, enough for
// runAsUser tests and tools that look names up.
const (
	busyboxPasswd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	busyboxGroup  = "root:x:0:\nnogroup:x:65534:\n"
)

// Busybox returns a small general-purpose image made from a static busybox
// binary at path (DefaultBusybox when empty): /bin/busybox, a symlink in
// /bin for every applet it lists, /etc/passwd and /etc/group, /tmp, /root
// and /var/www. The layer is deterministic, so the same binary always
// gives the same digest. The binary must be static and built for this
// machine: it is run once to list its applets.
func Busybox(path string) (v1.Image, error) {
	if path == "" {
		path = DefaultBusybox
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %s --list: %w", path, err)
	}
	entries := []entry{
		dir("bin", 0o755),
		file("bin/busybox", 0o755, bin),
		dir("etc", 0o755),
		file("etc/passwd", 0o644, []byte(busyboxPasswd)),
		file("etc/group", 0o644, []byte(busyboxGroup)),
		dir("root", 0o700),
		dir("tmp", 0o1777),
		dir("var", 0o755),
		dir("var/www", 0o755),
	}
	// sh is listed by every useful busybox; adding it here too keeps
	// /bin/sh present (it is the image's Cmd) even for a trimmed build.
	seen := map[string]bool{"busybox": true}
	for _, applet := range append(strings.Fields(string(out)), "sh") {
		if seen[applet] {
			continue
		}
		seen[applet] = true
		if applet == "." || applet == ".." || strings.Contains(applet, "/") {
			return nil, fmt.Errorf("busybox applet %q is not a file name", applet)
		}
		entries = append(entries, symlink("bin/"+applet, "busybox"))
	}
	layer, err := buildLayer(entries)
	if err != nil {
		return nil, fmt.Errorf("busybox layer: %w", err)
	}
	img, err := buildImage(layer, v1.Config{Env: []string{busyboxPath}, Cmd: []string{"sh"}}, "skiff busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return img, nil
}
