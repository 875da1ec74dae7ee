package network

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// newNetns returns a fresh, unnamed network namespace, gone once the
// handle is closed at cleanup and nothing runs in it.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	inNetns(t, 0, func() error {
		var err error
		ns, err = netns.New()
		return err
	})
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

// inNetns runs f on a thread in ns (0: a thread returned to the current
// namespace afterwards, for f to switch itself). Processes f starts are
// forked from that thread and so run in ns.
func inNetns(t *testing.T, ns netns.NsHandle, f func() error) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if ns != 0 {
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			t.Fatal(err)
		}
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so Go discards it.
		t.Fatalf("return to original netns: %v", err)
	}
	runtime.UnlockOSThread()
	if ferr != nil {
		t.Fatal(ferr)
	}
}
