// Package memtrim gives back the pages of the executable's own code and
// read-only data that start-up touched and a running server no longer uses.
//
// The binary links kubectl and every API type; package initialisation and
// the kernel's read-ahead of large page-cache folios leave most of its
// 80 MB of text and read-only data mapped, and they count as resident
// memory although a long-running server uses a few megabytes of them.
// Marking those mappings random-access (no read-ahead, no fault-around) and
// dropping their page-table entries once makes the process fault back in
// only the pages it actually runs. The pages stay in the page cache, so
// nothing is read from disk again.
package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// TrimExecutable drops the resident read-only pages of the running
// executable's file mappings and returns how many bytes it covered.
func TrimExecutable() (int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// address perms offset dev inode path
		if len(fields) < 6 || fields[5] != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if err := madvise(uintptr(start), uintptr(end-start), syscall.MADV_RANDOM); err != nil {
			return total, fmt.Errorf("memtrim: madvise random: %w", err)
		}
		if err := madvise(uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); err != nil {
			return total, fmt.Errorf("memtrim: madvise dontneed: %w", err)
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

func madvise(addr, length uintptr, advice int) error {
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, addr, length, uintptr(advice))
	if errno != 0 {
		return errno
	}
	return nil
}
