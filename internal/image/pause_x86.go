package image

import (
	"encoding/binary"
	"fmt"
)

// The pause program (see Pause for its contract) in x86-64 machine code (GOARCH amd64).
// Linux x86-64 syscall convention: number in eax/rax, arguments in rdi, rsi,
// rdx, r10; `syscall` returns in rax (a negative errno on failure) and
// clobbers only rcx and r11, so argument registers set once stay valid for
// later calls. Writing a 32-bit register zero-extends into the 64-bit one,
// which keeps every immediate and address (the image is mapped below 4 GiB)
// to a short 32-bit form.

// Signal and syscall numbers of the x86-64 Linux ABI.
const (
	sigINT  = 2  // same on both architectures
	sigTERM = 15 // same on both architectures
	sigCHLD = 17 // same on both architectures

	amd64SysRtSigaction = 13
	amd64SysRtSigreturn = 15
	amd64SysPause       = 34
	amd64SysExitGroup   = 231

	// saRestorer tells the kernel that sa_restorer is valid; x86-64 refuses
	// to deliver a signal to a handler without one.
	saRestorer = 0x04000000
	// sigIgn is SIG_IGN as a handler value.
	sigIgn = 1
)

// pauseAMD64 is the x86-64 program. Each line is one instruction, its
// encoding and the reason it is there.
func pauseAMD64() []chunk {
	return []chunk{
		// Ignore SIGCHLD: for an ignored SIGCHLD the kernel reaps exited
		// children itself, so as PID 1 of the pod we never hold zombies.
		// rt_sigaction(SIGCHLD, &ignoreAction, NULL, 8)
		x86imm32([]byte{0xbf}, sigCHLD),             // mov edi, SIGCHLD
		x86addr32([]byte{0xbe}, "ignoreAction"),     // mov esi, &ignoreAction
		fixed(0x31, 0xd2),                           // xor edx, edx: no old action wanted
		x86imm32([]byte{0x41, 0xba}, 8),             // mov r10d, 8: sizeof the kernel's sigset_t
		x86imm32([]byte{0xb8}, amd64SysRtSigaction), // mov eax, rt_sigaction
		fixed(0x0f, 0x05),                           // syscall
		fixed(0x85, 0xc0),                           // test eax, eax: 0 on success
		x86rel8(0x75, "fail"),                       // jnz fail

		// Catch SIGTERM: PID 1 of a pid namespace gets no default action
		// for signals it has no handler for, so without this a stop
		// request would be ignored until SIGKILL.
		// rt_sigaction(SIGTERM, &exitAction, NULL, 8); rdx, r10 still hold NULL, 8.
		x86imm32([]byte{0xbf}, sigTERM),             // mov edi, SIGTERM
		x86addr32([]byte{0xbe}, "exitAction"),       // mov esi, &exitAction
		x86imm32([]byte{0xb8}, amd64SysRtSigaction), // mov eax, rt_sigaction
		fixed(0x0f, 0x05),                           // syscall
		fixed(0x85, 0xc0),                           // test eax, eax
		x86rel8(0x75, "fail"),                       // jnz fail

		// Catch SIGINT the same way, for interactive runs.
		x86imm32([]byte{0xbf}, sigINT),              // mov edi, SIGINT
		x86addr32([]byte{0xbe}, "exitAction"),       // mov esi, &exitAction
		x86imm32([]byte{0xb8}, amd64SysRtSigaction), // mov eax, rt_sigaction
		fixed(0x0f, 0x05),                           // syscall
		fixed(0x85, 0xc0),                           // test eax, eax
		x86rel8(0x75, "fail"),                       // jnz fail

		// Sleep until a signal arrives; pause() returns only after a
		// handler ran (and ours never return), but loop regardless.
		label("loop"),
		x86imm32([]byte{0xb8}, amd64SysPause), // mov eax, pause
		fixed(0x0f, 0x05),                     // syscall
		x86rel8(0xeb, "loop"),                 // jmp loop

		// SIGTERM/SIGINT handler: a clean stop, exit_group(0).
		label("onSignal"),
		fixed(0x31, 0xff),                         // xor edi, edi: status 0
		x86imm32([]byte{0xb8}, amd64SysExitGroup), // mov eax, exit_group
		fixed(0x0f, 0x05),                         // syscall

		// A failed rt_sigaction: exit_group(1) rather than run without
		// the behaviour the pod relies on.
		label("fail"),
		x86imm32([]byte{0xbf}, 1),                 // mov edi, 1
		x86imm32([]byte{0xb8}, amd64SysExitGroup), // mov eax, exit_group
		fixed(0x0f, 0x05),                         // syscall

		// sa_restorer: the handler exits, so this never runs, but x86-64
		// insists on one (SA_RESTORER) before it delivers a caught signal.
		label("restorer"),
		x86imm32([]byte{0xb8}, amd64SysRtSigreturn), // mov eax, rt_sigreturn
		fixed(0x0f, 0x05), // syscall

		// Kernel struct sigaction: handler, flags, restorer, mask (empty).
		align(8),
		label("ignoreAction"),
		quad(sigIgn), quad(0), quad(0), quad(0),
		label("exitAction"),
		quadAddr("onSignal"), quad(saRestorer), quadAddr("restorer"), quad(0),
	}
}

// x86imm32 is an opcode followed by a 32-bit immediate.
func x86imm32(op []byte, v uint32) chunk {
	return fixed(binary.LittleEndian.AppendUint32(append([]byte(nil), op...), v)...)
}

// x86addr32 is an opcode followed by a label's absolute address as a 32-bit
// immediate.
func x86addr32(op []byte, name string) chunk {
	return chunk{size: len(op) + 4, emit: func(_ uint64, addr func(string) uint64) ([]byte, error) {
		a := addr(name)
		if a > 0xffffffff {
			return nil, fmt.Errorf("address of %q %#x does not fit 32 bits", name, a)
		}
		return binary.LittleEndian.AppendUint32(append([]byte(nil), op...), uint32(a)), nil
	}}
}

// x86rel8 is a short jump: opcode and an 8-bit displacement from the end of
// the instruction.
func x86rel8(op byte, name string) chunk {
	return chunk{size: 2, emit: func(pc uint64, addr func(string) uint64) ([]byte, error) {
		d := int64(addr(name)) - int64(pc+2)
		if d < -128 || d > 127 {
			return nil, fmt.Errorf("jump to %q: displacement %d exceeds 8 bits", name, d)
		}
		return []byte{op, byte(int8(d))}, nil
	}}
}
