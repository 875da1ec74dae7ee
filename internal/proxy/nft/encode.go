package nft

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// Registers: reg 1 is the first 128-bit register; concatenations use the
// 32-bit registers that follow it (9, 10, ...), as nft itself does.
const (
	reg1     = 1
	reg2     = 2
	reg32_01 = 9
	reg32_02 = 10
)

// icmpPortUnreachable is ICMP's destination-unreachable code for ports.
const icmpPortUnreachable = 3

// IPv4 header offsets.
const (
	offSaddr = 12
	offDaddr = 16
	offDport = 2 // in the transport header, for TCP, UDP and SCTP alike
)

// rule encodes r into expressions.
func rule(r ruleset.Rule) (exprs []expr.Any, err error) {
	for _, x := range r {
		switch x := x.(type) {
		case ruleset.SaddrIn:
			exprs = append(exprs, addrMatch(offSaddr, x.Prefix, x.Not)...)
		case ruleset.DaddrIn:
			exprs = append(exprs, addrMatch(offDaddr, x.Prefix, x.Not)...)
		case ruleset.SaddrInSet:
			exprs = append(exprs, loadAddr(offSaddr, reg1), &expr.Lookup{SourceRegister: reg1, SetName: x.Set})
		case ruleset.DaddrInSet:
			exprs = append(exprs, loadAddr(offDaddr, reg1), &expr.Lookup{SourceRegister: reg1, SetName: x.Set})
		case ruleset.FibLocal:
			exprs = append(exprs,
				&expr.Fib{Register: reg1, FlagSADDR: !x.Daddr, FlagDADDR: x.Daddr, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
		case ruleset.CtNew:
			exprs = append(exprs,
				&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
				mask(expr.CtStateBitNEW, 0),
				&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)})
		case ruleset.MarkUnset:
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				mask(x.Bit, 0),
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)})
		case ruleset.MarkSet:
			// (mark & ^bit) ^ bit is mark | bit in one bitwise step.
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				mask(^x.Bit, x.Bit),
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
		case ruleset.MarkClear:
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
				mask(math.MaxUint32, x.Bit),
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
		case ruleset.Dispatch:
			protoReg, portReg := uint32(reg32_01), uint32(reg32_02)
			if x.NoAddr {
				protoReg, portReg = reg1, reg32_01
			} else {
				exprs = append(exprs, loadAddr(offDaddr, reg1))
			}
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
				&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: offDport, Len: 2},
				&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, DestRegister: 0, SetName: x.Map})
		case ruleset.UpdateSet:
			exprs = append(exprs, loadAddr(offSaddr, reg1),
				&expr.Dynset{SrcRegKey: reg1, SetName: x.Set, Operation: unix.NFT_DYNSET_OP_UPDATE})
		case ruleset.DNAT:
			if !x.Addr.Is4() {
				return nil, fmt.Errorf("dnat to %s: not IPv4", x.Addr)
			}
			addr := x.Addr.As4()
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{byte(x.Proto)}},
				&expr.Immediate{Register: reg1, Data: addr[:]},
				&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(x.Port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4,
					RegAddrMin: reg1, RegProtoMin: reg2, Specified: true})
		case ruleset.Masquerade:
			exprs = append(exprs, &expr.Masq{FullyRandom: true})
		case ruleset.Reject:
			exprs = append(exprs, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable})
		case ruleset.Numgen:
			exprs = append(exprs,
				&expr.Numgen{Register: reg1, Modulus: uint32(x.N), Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: reg1, IsDestRegSet: true, DestRegister: 0, SetName: x.Map})
		case ruleset.Verdict:
			v, err := verdict(x)
			if err != nil {
				return nil, err
			}
			exprs = append(exprs, v)
		default:
			return nil, fmt.Errorf("encode %T: unknown expression", x)
		}
	}
	return exprs, nil
}

func verdict(v ruleset.Verdict) (*expr.Verdict, error) {
	switch v.Kind {
	case ruleset.Jump:
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}, nil
	case ruleset.Goto:
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}, nil
	case ruleset.Return:
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case ruleset.Drop:
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	}
	return nil, fmt.Errorf("unknown verdict %d", v.Kind)
}

func loadAddr(offset uint32, reg uint32) *expr.Payload {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
}

// mask is reg1 = (reg1 & and) ^ xor on a host-order 32-bit value (marks,
// conntrack state).
func mask(and, xor uint32) *expr.Bitwise {
	return &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
		Mask: binaryutil.NativeEndian.PutUint32(and), Xor: binaryutil.NativeEndian.PutUint32(xor)}
}

func addrMatch(offset uint32, p netip.Prefix, not bool) []expr.Any {
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	p = p.Masked()
	addr := p.Addr().As4()
	out := []expr.Any{loadAddr(offset, reg1)}
	if !p.IsSingleIP() {
		m := uint32(math.MaxUint32) << (32 - p.Bits())
		if p.Bits() == 0 {
			m = 0
		}
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.BigEndian.PutUint32(m), Xor: []byte{0, 0, 0, 0}})
	}
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: addr[:]})
}

// keyType is the kernel type of a model key type.
func keyType(k ruleset.KeyType) (nftables.SetDatatype, bool) {
	switch k {
	case ruleset.KeyAddr:
		return nftables.TypeIPAddr, false
	case ruleset.KeyAddrProtoPort:
		return nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService), true
	case ruleset.KeyProtoPort:
		return nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService), true
	case ruleset.KeyIndex:
		return nftables.TypeInteger, false
	}
	panic(fmt.Sprintf("unknown key type %d", k))
}

// key encodes an element key: each part of a concatenation padded to
// four bytes, as the registers the lookup reads it from are.
func key(t ruleset.KeyType, k ruleset.Key) []byte {
	proto := []byte{byte(k.Proto), 0, 0, 0}
	port := append(binaryutil.BigEndian.PutUint16(k.Port), 0, 0)
	switch t {
	case ruleset.KeyAddr:
		addr := k.Addr.As4()
		return addr[:]
	case ruleset.KeyAddrProtoPort:
		addr := k.Addr.As4()
		return append(append(addr[:], proto...), port...)
	case ruleset.KeyProtoPort:
		return append(proto, port...)
	case ruleset.KeyIndex:
		// numgen's number is host-endian.
		return binaryutil.NativeEndian.PutUint32(k.Index)
	}
	panic(fmt.Sprintf("unknown key type %d", t))
}
