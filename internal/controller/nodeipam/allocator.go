package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net"
)

// errFull means every node subnet of the cluster CIDR is taken.
var errFull = errors.New("no free pod CIDR left in the cluster CIDR")

// allocator hands out the fixed-size subnets of one cluster CIDR. It is
// not safe for concurrent use; the controller holds a lock around it.
type allocator struct {
	base     *net.IPNet
	maskSize int
	used     []bool
	next     int // next-fit: a released subnet is not reused at once
}

func newAllocator(cidr string, maskSize int) (*allocator, error) {
	_, base, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("cluster CIDR %q: %w", cidr, err)
	}
	ones, bits := base.Mask.Size()
	if maskSize < ones || maskSize > bits || maskSize-ones > 16 {
		return nil, fmt.Errorf("node mask /%d does not fit cluster CIDR %s", maskSize, cidr)
	}
	return &allocator{base: base, maskSize: maskSize, used: make([]bool, 1<<(maskSize-ones))}, nil
}

// subnet returns the i-th node subnet.
func (a *allocator) subnet(i int) *net.IPNet {
	_, bits := a.base.Mask.Size()
	ip := new(big.Int).SetBytes(a.base.IP)
	ip.Add(ip, new(big.Int).Lsh(big.NewInt(int64(i)), uint(bits-a.maskSize)))
	raw := ip.Bytes()
	out := make(net.IP, len(a.base.IP))
	copy(out[len(out)-len(raw):], raw)
	return &net.IPNet{IP: out, Mask: net.CIDRMask(a.maskSize, bits)}
}

// index returns which node subnet cidr is, if it is exactly one of ours.
func (a *allocator) index(cidr string) (int, bool) {
	ip, n, err := net.ParseCIDR(cidr)
	if err != nil || !a.base.Contains(ip) {
		return 0, false
	}
	if ones, _ := n.Mask.Size(); ones != a.maskSize {
		return 0, false
	}
	if len(ip) != len(a.base.IP) {
		ip = ip.To4()
		if ip == nil {
			return 0, false
		}
	}
	_, bits := a.base.Mask.Size()
	off := new(big.Int).Sub(new(big.Int).SetBytes(n.IP.To16()[16-len(a.base.IP):]), new(big.Int).SetBytes(a.base.IP))
	return int(new(big.Int).Rsh(off, uint(bits-a.maskSize)).Int64()), true
}

// occupy marks cidr as taken (a node already has it).
func (a *allocator) occupy(cidr string) {
	if i, ok := a.index(cidr); ok {
		a.used[i] = true
	}
}

// release frees cidr.
func (a *allocator) release(cidr string) {
	if i, ok := a.index(cidr); ok {
		a.used[i] = false
	}
}

// allocate takes the next free subnet.
func (a *allocator) allocate() (string, error) {
	for k := 0; k < len(a.used); k++ {
		i := (a.next + k) % len(a.used)
		if !a.used[i] {
			a.used[i] = true
			a.next = (i + 1) % len(a.used)
			return a.subnet(i).String(), nil
		}
	}
	return "", errFull
}
