package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// sender sends the batches the nftables library builds, in place of the
// library's own socket. The library asks the kernel to acknowledge every
// message, and every rule to be echoed back, and reads the answers one
// receive at a time; for a full table of 1,000 Services that is some
// 40,000 messages and 64,000 answers, and reading them took longer than
// the kernel took to apply the whole batch. The sender asks for one acknowledgement, for the last
// message: the kernel still reports every message that fails, and the
// batch stands or falls as a whole either way.
//
// It plugs into the library through its dial hook (nftables.WithTestDial):
// the library hands over each batch, fully built, and is told every
// message succeeded; the kernel's verdict is kept in err, which the
// writer checks after each Flush.
type sender struct {
	fd  int
	err error
	// drop makes the next batch go nowhere (see Writer.discard).
	drop bool
}

// ackTimeout bounds the wait for the kernel's answer. The kernel applies
// a batch while sending it, so the answer is there at once; this only
// guards against a kernel that never answers.
const ackTimeout = time.Minute

// newSender opens a netfilter netlink socket in ns (0: the current one).
func newSender(ns int) (*sender, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(ackTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	// Errors come with the extended acknowledgement's message, which
	// says which attribute the kernel disliked.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &sender{fd: fd}, nil
}

// socketIn creates the socket on a thread switched to ns, which is where
// the socket then belongs for good.
func socketIn(ns int) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	}
	if ns == 0 {
		return open()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	if err := netns.Set(netns.NsHandle(ns)); err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	fd, err := open()
	if serr := netns.Set(orig); serr != nil {
		// Leave the thread locked: Go retires it with this goroutine
		// rather than reuse a thread in the wrong namespace.
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("return to own network namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return fd, err
}

func (s *sender) close() error { return unix.Close(s.fd) }

// roundTrip is the library's dial hook. Given a batch, it sends it; given
// nothing, the library is reading an acknowledgement, and gets one.
func (s *sender) roundTrip(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
	}
	if !s.drop {
		s.err = s.send(req)
	}
	return nil, nil
}

// send writes a batch (begin, commands, end) in one sendmsg and reads the
// kernel's answers up to the acknowledgement of the last command.
func (s *sender) send(batch []netlink.Message) error {
	if len(batch) < 3 {
		return nil
	}
	last := len(batch) - 2
	var buf []byte
	for i, m := range batch {
		// Rules also ask the kernel to echo them back (for their
		// handles), which we have no use for.
		m.Header.Flags &^= netlink.Echo
		if i != last {
			m.Header.Flags &^= netlink.Acknowledge
		} else {
			m.Header.Flags |= netlink.Acknowledge
		}
		b, err := m.MarshalBinary()
		if err != nil {
			return fmt.Errorf("marshal message: %w", err)
		}
		buf = append(buf, b...)
	}
	// The whole batch must fit the socket's send buffer.
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, len(buf)+64<<10); err != nil {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, len(buf)+64<<10); err != nil {
			return fmt.Errorf("netlink send buffer: %w", err)
		}
	}
	if err := unix.Sendto(s.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send batch of %d messages (%d bytes): %w", len(batch), len(buf), err)
	}

	lastSeq := batch[last].Header.Sequence
	var errs []error
	rb := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(s.fd, rb, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the kernel's answer (batch outcome unknown): %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rb[:n])
		if err != nil {
			return fmt.Errorf("parse the kernel's answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				errs = append(errs, messageError(m, syscall.Errno(-errno)))
			}
			if m.Header.Seq == lastSeq {
				return errors.Join(errs...)
			}
		}
	}
}

// messageError describes a failed message: the operation, the errno and
// the kernel's explanation if it gave one.
func messageError(m syscall.NetlinkMessage, errno syscall.Errno) error {
	const hdrLen = unix.SizeofNlMsghdr
	op := "message"
	text := ""
	if len(m.Data) >= 4+hdrLen {
		orig := binary.NativeEndian.Uint16(m.Data[8:10])
		op = msgName(orig & 0xff)
		origLen := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		off := 4 + hdrLen
		if m.Header.Flags&unix.NLM_F_CAPPED == 0 {
			off = 4 + (origLen+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)
		}
		if m.Header.Flags&unix.NLM_F_ACK_TLVS != 0 && off < len(m.Data) {
			if ad, err := netlink.NewAttributeDecoder(m.Data[off:]); err == nil {
				for ad.Next() {
					if ad.Type() == unix.NLMSGERR_ATTR_MSG {
						text = ": " + ad.String()
					}
				}
			}
		}
	}
	return fmt.Errorf("%s: %w%s", op, errno, text)
}

func msgName(t uint16) string {
	switch t {
	case unix.NFT_MSG_NEWTABLE:
		return "add table"
	case unix.NFT_MSG_DELTABLE:
		return "delete table"
	case unix.NFT_MSG_NEWCHAIN:
		return "add chain"
	case unix.NFT_MSG_DELCHAIN:
		return "delete chain"
	case unix.NFT_MSG_NEWRULE:
		return "add rule"
	case unix.NFT_MSG_DELRULE:
		return "flush chain"
	case unix.NFT_MSG_NEWSET:
		return "add set"
	case unix.NFT_MSG_DELSET:
		return "delete set"
	case unix.NFT_MSG_NEWSETELEM:
		return "add element"
	case unix.NFT_MSG_DELSETELEM:
		return "delete element"
	}
	return fmt.Sprintf("message type %d", t)
}
