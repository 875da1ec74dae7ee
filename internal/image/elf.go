package image

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// The pause program is emitted as machine code by Go so that the agent can
// build its sandbox image from nothing but its own binary: no C toolchain,
// no embedded build artefact. This file holds the two pieces that do not
// depend on the instruction set: a minimal assembler (fixed-size chunks and
// labels) and the ELF container around the code.

// elfBase is where the single PT_LOAD segment is mapped. It is the
// conventional non-PIE base, far above mmap_min_addr, and a multiple of the
// 64 KiB pages some arm64 kernels use.
const elfBase = 0x400000

// ELF64 header and program header sizes; the code starts right after one
// header and two program headers.
const (
	elfHeaderSize   = 64
	elfPhdrSize     = 56
	elfPhdrCount    = 2
	elfCodeOffset   = elfHeaderSize + elfPhdrSize*elfPhdrCount
	elfSegmentAlign = 0x10000
)

// chunk is one instruction or datum of a fixed size. emit receives the
// chunk's own address and a lookup for any label's address, so forward
// references (jumps to later code, pointers to later data) need no fix-up
// pass of their own: sizes are known up front, addresses are assigned
// first, bytes are produced second.
type chunk struct {
	label string // non-empty: a zero-size marker naming this address
	align uint64 // non-zero: zero padding up to this alignment
	size  int
	emit  func(pc uint64, addr func(string) uint64) ([]byte, error)
}

// label marks the address of whatever follows.
func label(name string) chunk { return chunk{label: name} }

// align pads with zero bytes up to an n-byte boundary. The kernel accepts
// unaligned sigaction structs; aligned ones are simply the norm.
func align(n uint64) chunk { return chunk{align: n} }

// fixed is a chunk whose bytes never depend on addresses.
func fixed(b ...byte) chunk {
	return chunk{size: len(b), emit: func(uint64, func(string) uint64) ([]byte, error) { return b, nil }}
}

// quad is a little-endian 64-bit datum.
func quad(v uint64) chunk { return fixed(binary.LittleEndian.AppendUint64(nil, v)...) }

// quadAddr is a little-endian 64-bit datum holding a label's address, used
// for the handler pointers inside struct sigaction.
func quadAddr(name string) chunk {
	return chunk{size: 8, emit: func(_ uint64, addr func(string) uint64) ([]byte, error) {
		return binary.LittleEndian.AppendUint64(nil, addr(name)), nil
	}}
}

// assemble lays chunks out from base and returns their bytes.
func assemble(base uint64, prog []chunk) ([]byte, error) {
	addrs := map[string]uint64{}
	sizes := make([]int, len(prog))
	pc := base
	for i, c := range prog {
		switch {
		case c.label != "":
			if _, dup := addrs[c.label]; dup {
				return nil, fmt.Errorf("label %q defined twice", c.label)
			}
			addrs[c.label] = pc
		case c.align != 0:
			sizes[i] = int((c.align - pc%c.align) % c.align)
		default:
			sizes[i] = c.size
		}
		pc += uint64(sizes[i])
	}
	var missing string
	lookup := func(name string) uint64 {
		a, ok := addrs[name]
		if !ok {
			missing = name
		}
		return a
	}
	out := make([]byte, 0, pc-base)
	pc = base
	for i, c := range prog {
		b := make([]byte, sizes[i]) // labels and padding: empty or zeros
		if c.emit != nil {
			var err error
			if b, err = c.emit(pc, lookup); err != nil {
				return nil, fmt.Errorf("at %#x: %w", pc, err)
			}
		}
		if missing != "" {
			return nil, fmt.Errorf("at %#x: undefined label %q", pc, missing)
		}
		if len(b) != sizes[i] {
			return nil, fmt.Errorf("at %#x: chunk emitted %d bytes, declared %d", pc, len(b), sizes[i])
		}
		out = append(out, b...)
		pc += uint64(sizes[i])
	}
	return out, nil
}

// pauseELF returns the pause program for goarch as a static ELF executable.
func pauseELF(goarch string) ([]byte, error) {
	var (
		machine elf.Machine
		prog    []chunk
	)
	switch goarch {
	case "amd64":
		machine, prog = elf.EM_X86_64, pauseAMD64()
	case "arm64":
		machine, prog = elf.EM_AARCH64, pauseARM64()
	default:
		return nil, fmt.Errorf("pause program: no machine code for GOARCH %q (have amd64, arm64)", goarch)
	}
	code, err := assemble(elfBase+elfCodeOffset, prog)
	if err != nil {
		return nil, fmt.Errorf("assemble pause for %s: %w", goarch, err)
	}
	return elfFile(machine, code), nil
}

// elfFile wraps code in an ELF64 little-endian executable: one read+execute
// PT_LOAD segment mapping the whole file (headers included, which is what
// lets the entry point be a plain offset into it), and a PT_GNU_STACK entry
// so that the kernel gives the process a non-executable stack.
func elfFile(machine elf.Machine, code []byte) []byte {
	le := binary.LittleEndian
	size := uint64(elfCodeOffset + len(code))
	b := make([]byte, 0, size)

	// e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
	b = append(b, 0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT), byte(elf.ELFOSABI_NONE))
	b = append(b, make([]byte, 8)...) // ABI version and padding
	b = le.AppendUint16(b, uint16(elf.ET_EXEC))
	b = le.AppendUint16(b, uint16(machine))
	b = le.AppendUint32(b, uint32(elf.EV_CURRENT))
	b = le.AppendUint64(b, elfBase+elfCodeOffset) // e_entry: first instruction
	b = le.AppendUint64(b, elfHeaderSize)         // e_phoff: program headers follow
	b = le.AppendUint64(b, 0)                     // e_shoff: no sections needed to run
	b = le.AppendUint32(b, 0)                     // e_flags
	b = le.AppendUint16(b, elfHeaderSize)
	b = le.AppendUint16(b, elfPhdrSize)
	b = le.AppendUint16(b, elfPhdrCount)
	b = le.AppendUint16(b, 64) // e_shentsize: the ELF64 value even with no sections
	b = le.AppendUint16(b, 0)  // e_shnum
	b = le.AppendUint16(b, uint16(elf.SHN_UNDEF))

	// PT_LOAD: file offset 0 at elfBase, read+execute. The sigaction
	// structs live here too; the kernel only reads them.
	b = le.AppendUint32(b, uint32(elf.PT_LOAD))
	b = le.AppendUint32(b, uint32(elf.PF_R|elf.PF_X))
	b = le.AppendUint64(b, 0)       // p_offset
	b = le.AppendUint64(b, elfBase) // p_vaddr
	b = le.AppendUint64(b, elfBase) // p_paddr
	b = le.AppendUint64(b, size)    // p_filesz
	b = le.AppendUint64(b, size)    // p_memsz
	b = le.AppendUint64(b, elfSegmentAlign)

	// PT_GNU_STACK: without it, x86-64 kernels default to an executable
	// stack.
	b = le.AppendUint32(b, uint32(elf.PT_GNU_STACK))
	b = le.AppendUint32(b, uint32(elf.PF_R|elf.PF_W))
	b = append(b, make([]byte, 6*8)...)

	return append(b, code...)
}
