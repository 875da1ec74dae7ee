package e2e

import (
	"debug/elf"
	"testing"
)

// TestBinaryIsStatic: hack/build.sh links without cgo. A cgo build that
// also links package plugin (kustomize imports it) is linked as if plugins
// could load into it: every symbol exported, every method kept, and ~35 MB
// more of the binary mapped by an idle server, which puts it over its
// memory goal. The dynamic symbol table and the interpreter are the marks
// of that build.
func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(cl.bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: it is dynamically linked (built with cgo?)", cl.bin)
		}
	}
	if s := f.Section(".dynsym"); s != nil {
		t.Errorf("%s has a %d-byte .dynsym: it exports symbols (built with cgo?)", cl.bin, s.Size)
	}
}
