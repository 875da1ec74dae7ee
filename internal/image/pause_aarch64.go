package image

import "fmt"

// The pause program (see Pause for its contract) in AArch64 machine code
// (GOARCH arm64). Linux arm64 syscall convention: number in x8, arguments
// in x0..x5, `svc #0` returns in x0 (a negative errno on failure) and
// preserves every other register. arm64 has no pause syscall, so the
// program waits in ppoll with no descriptors and no timeout, which is what
// libc's pause() does there. Every instruction is 4 bytes, little-endian.

// Syscall numbers of the generic (arm64) Linux ABI.
const (
	arm64SysPpoll       = 73
	arm64SysExitGroup   = 94
	arm64SysRtSigaction = 134
)

// pauseARM64 is the arm64 program. Each line is one instruction and the
// reason it is there; see pauseAMD64 for why each signal is set up.
func pauseARM64() []chunk {
	return []chunk{
		// rt_sigaction(SIGCHLD, &ignoreAction, NULL, 8): the kernel reaps
		// our children.
		a64movz(0, sigCHLD),             // movz x0, #SIGCHLD
		a64adr(1, "ignoreAction"),       // adr x1, ignoreAction: PC-relative, no absolute address needed
		a64movz(2, 0),                   // movz x2, #0: no old action wanted
		a64movz(3, 8),                   // movz x3, #8: sizeof the kernel's sigset_t
		a64movz(8, arm64SysRtSigaction), // movz x8, #rt_sigaction
		a64word(0xd4000001),             // svc #0
		a64cbnz(0, "fail"),              // cbnz x0, fail

		// rt_sigaction(SIGTERM, &exitAction, NULL, 8); x2, x3 survive svc.
		a64movz(0, sigTERM),             // movz x0, #SIGTERM
		a64adr(1, "exitAction"),         // adr x1, exitAction
		a64movz(8, arm64SysRtSigaction), // movz x8, #rt_sigaction
		a64word(0xd4000001),             // svc #0
		a64cbnz(0, "fail"),              // cbnz x0, fail

		// rt_sigaction(SIGINT, &exitAction, NULL, 8)
		a64movz(0, sigINT),              // movz x0, #SIGINT
		a64adr(1, "exitAction"),         // adr x1, exitAction
		a64movz(8, arm64SysRtSigaction), // movz x8, #rt_sigaction
		a64word(0xd4000001),             // svc #0
		a64cbnz(0, "fail"),              // cbnz x0, fail

		// ppoll(NULL, 0, NULL, NULL): sleep until a handler runs; loop
		// regardless. x0 holds the last result and x1 an address, so set
		// all four arguments on every pass.
		label("loop"),
		a64movz(0, 0),             // movz x0, #0: no fds
		a64movz(1, 0),             // movz x1, #0: nfds 0
		a64movz(2, 0),             // movz x2, #0: no timeout
		a64movz(3, 0),             // movz x3, #0: keep the signal mask
		a64movz(8, arm64SysPpoll), // movz x8, #ppoll
		a64word(0xd4000001),       // svc #0
		a64b("loop"),              // b loop

		// SIGTERM/SIGINT handler: exit_group(0).
		label("onSignal"),
		a64movz(0, 0),                 // movz x0, #0: status 0
		a64movz(8, arm64SysExitGroup), // movz x8, #exit_group
		a64word(0xd4000001),           // svc #0

		// A failed rt_sigaction: exit_group(1).
		label("fail"),
		a64movz(0, 1),                 // movz x0, #1
		a64movz(8, arm64SysExitGroup), // movz x8, #exit_group
		a64word(0xd4000001),           // svc #0

		// Kernel struct sigaction: handler, flags, restorer, mask. No
		// SA_RESTORER: arm64 returns through the vDSO trampoline, and our
		// handler never returns anyway.
		align(8),
		label("ignoreAction"),
		quad(sigIgn), quad(0), quad(0), quad(0),
		label("exitAction"),
		quadAddr("onSignal"), quad(0), quad(0), quad(0),
	}
}

// a64word is one instruction with no address operand.
func a64word(w uint32) chunk { return fixed(byte(w), byte(w>>8), byte(w>>16), byte(w>>24)) }

// a64movz is MOVZ Xd, #imm16 (64-bit, no shift): sf=1 opc=10 100101 hw=00.
func a64movz(rd uint32, imm uint16) chunk {
	return a64word(0xd2800000 | uint32(imm)<<5 | rd)
}

// a64rel encodes an instruction whose operand is the distance from its own
// address to a label, checked against the field's width.
func a64rel(name string, bits uint, scale int64, enc func(d uint32) uint32) chunk {
	return chunk{size: 4, emit: func(pc uint64, addr func(string) uint64) ([]byte, error) {
		off := int64(addr(name)) - int64(pc)
		if off%scale != 0 {
			return nil, fmt.Errorf("offset to %q %d not a multiple of %d", name, off, scale)
		}
		d := off / scale
		if limit := int64(1) << (bits - 1); d < -limit || d >= limit {
			return nil, fmt.Errorf("offset to %q %d does not fit %d bits", name, off, bits)
		}
		w := enc(uint32(d) & (1<<bits - 1))
		return []byte{byte(w), byte(w >> 8), byte(w >> 16), byte(w >> 24)}, nil
	}}
}

// a64adr is ADR Xd, label: op=0 immlo(2) 10000 immhi(19) Rd, byte offset.
func a64adr(rd uint32, name string) chunk {
	return a64rel(name, 21, 1, func(d uint32) uint32 {
		return 0x10000000 | (d&3)<<29 | (d>>2)<<5 | rd
	})
}

// a64cbnz is CBNZ Xt, label (64-bit): sf=1 011010 op=1 imm19 Rt, word offset.
func a64cbnz(rt uint32, name string) chunk {
	return a64rel(name, 19, 4, func(d uint32) uint32 { return 0xb5000000 | d<<5 | rt })
}

// a64b is B label: 000101 imm26, word offset.
func a64b(name string) chunk {
	return a64rel(name, 26, 4, func(d uint32) uint32 { return 0x14000000 | d })
}
