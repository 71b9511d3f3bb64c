package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// idleSockets is how many netlink sockets a Client keeps open between
	// calls: one per concurrent caller saves a socket+bind+close (~5 µs)
	// per lookup; more callers than this open and close their own.
	idleSockets = 4
	// recvBufLen holds one recvmsg of a dump: the kernel fills up to a page
	// or so per message batch, 32 KiB leaves room for large pages.
	recvBufLen = 32 << 10
	// recvTimeout bounds one answer. The kernel answers a diag request
	// synchronously, so this is only a guard against a wedged socket.
	recvTimeout = time.Second
	// maxDumpSockets bounds what one List collects, so a namespace with a
	// pathological number of sockets cannot grow a reply without bound.
	maxDumpSockets = 1 << 16
)

// ErrAmbiguous is returned by Find when several sockets fit the addresses
// and none fits better than the others.
var ErrAmbiguous = errors.New("sockdiag: several sockets match")

// Client talks NETLINK_SOCK_DIAG in the network namespace it was created
// in. It is safe for concurrent use; Close releases its idle sockets.
type Client struct {
	idle chan *nlSocket
	seq  atomic.Uint32
}

// New returns a Client. It opens one socket to check that sock_diag is
// available (a kernel without CONFIG_INET_DIAG says so here, not later).
func New() (*Client, error) {
	c := &Client{idle: make(chan *nlSocket, idleSockets)}
	s, err := openSocket()
	if err != nil {
		return nil, err
	}
	c.put(s)
	return c, nil
}

// Close closes the idle sockets. Calls running concurrently close theirs
// when they end.
func (c *Client) Close() error {
	for {
		select {
		case s := <-c.idle:
			s.close()
		default:
			return nil
		}
	}
}

// nlSocket is one netlink socket and its receive buffer, used by one
// caller at a time.
type nlSocket struct {
	fd  int
	buf []byte
}

func openSocket() (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: socket(NETLINK_SOCK_DIAG): %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockdiag: bind netlink: %w", err)
	}
	tv := unix.NsecToTimeval(recvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockdiag: setsockopt SO_RCVTIMEO: %w", err)
	}
	return &nlSocket{fd: fd, buf: make([]byte, recvBufLen)}, nil
}

func (s *nlSocket) close() { unix.Close(s.fd) }

func (c *Client) get() (*nlSocket, error) {
	select {
	case s := <-c.idle:
		return s, nil
	default:
		return openSocket()
	}
}

func (c *Client) put(s *nlSocket) {
	select {
	case c.idle <- s:
	default:
		s.close()
	}
}

// Find returns the socket whose local address is src and whose peer is
// dst, as the socket's owner sees them (for a redirected connection: the
// client's address and the original destination).
//
// A TCP socket with a known dst is looked up exactly. Otherwise (UDP, or
// dst invalid) the sockets bound to src's port are listed and the best
// fit kept: a socket bound to src's address beats one bound to the
// wildcard, and a connected socket must be connected to dst when dst is
// valid. ErrNotFound when none fits, ErrAmbiguous when several fit
// equally well.
func (c *Client) Find(proto Proto, src, dst netip.AddrPort) (Socket, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if !src.IsValid() || src.Port() == 0 {
		return Socket{}, fmt.Errorf("sockdiag: find %s: source %s has no address and port", proto, src)
	}
	if proto == TCP && dst.IsValid() && dst.Port() != 0 {
		return c.findExact(proto, src, dst)
	}
	socks, err := c.List(proto, Query{SrcPort: src.Port()})
	if err != nil {
		return Socket{}, err
	}
	return bestFit(socks, src, dst)
}

// bestFit picks the socket of socks (all bound to src's port) that would
// have sent from src to dst.
func bestFit(socks []Socket, src, dst netip.AddrPort) (Socket, error) {
	best, bestScore, tie := Socket{}, 0, false
	for _, s := range socks {
		score := fitScore(s, src, dst)
		switch {
		case score == 0:
		case score > bestScore:
			best, bestScore, tie = s, score, false
		case score == bestScore && s.Inode != best.Inode:
			tie = true
		}
	}
	switch {
	case bestScore == 0:
		return Socket{}, ErrNotFound
	case tie:
		return Socket{}, ErrAmbiguous
	}
	return best, nil
}

// fitScore is 0 when s cannot be the sender, else higher for closer fits:
// an exact local address beats the wildcard, a socket connected to dst
// beats an unconnected one, and a listener is the worst fit (a client
// socket shares its port only through SO_REUSEADDR tricks).
func fitScore(s Socket, src, dst netip.AddrPort) int {
	score := 1
	switch {
	case s.Src.Addr() == src.Addr():
		score += 4
	case s.Src.Addr().IsUnspecified():
	default:
		return 0
	}
	connected := s.Dst.Port() != 0 && !s.Dst.Addr().IsUnspecified()
	switch {
	case s.State == StateListen:
		return score
	case !connected:
		score += 1
	case !dst.IsValid():
		score += 2
	case s.Dst == dst:
		score += 3
	default:
		return 0
	}
	return score
}

func (c *Client) findExact(proto Proto, src, dst netip.AddrPort) (Socket, error) {
	family := familyOf(src.Addr())
	var found Socket
	n := 0
	err := c.exchange(request{family: family, proto: uint8(proto), states: AllStates, src: src, dst: dst}, func(s Socket) error {
		found, n = s, n+1
		return nil
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return Socket{}, ErrNotFound
	case err != nil:
		return Socket{}, fmt.Errorf("sockdiag: find %s %s→%s: %w", proto, src, dst, err)
	case n == 0:
		return Socket{}, ErrNotFound
	}
	return found, nil
}

// List returns the sockets of proto that q selects.
func (c *Client) List(proto Proto, q Query) ([]Socket, error) {
	states := q.States
	if states == 0 {
		states = AllStates
	}
	var bc []byte
	if q.SrcPort != 0 {
		bc = srcPortFilter(q.SrcPort)
	}
	families := []uint8{unix.AF_INET, unix.AF_INET6}
	if q.Family != 0 {
		families = []uint8{q.Family}
	}
	var out []Socket
	for _, f := range families {
		err := c.exchange(request{family: f, proto: uint8(proto), states: states, bytecode: bc, dump: true}, func(s Socket) error {
			if len(out) >= maxDumpSockets {
				return fmt.Errorf("more than %d sockets", maxDumpSockets)
			}
			out = append(out, s)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sockdiag: list %s (family %d): %w", proto, f, err)
		}
	}
	return out, nil
}

func familyOf(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// exchange sends one request and calls each for every socket in the
// answer, until NLMSG_DONE (a dump) or the first message (a get).
func (c *Client) exchange(r request, each func(Socket) error) error {
	s, err := c.get()
	if err != nil {
		return err
	}
	// A socket whose exchange failed half-way may still hold the rest of
	// an answer: close it rather than hand it to the next caller.
	ok := false
	defer func() {
		if ok {
			c.put(s)
		} else {
			s.close()
		}
	}()
	seq := c.seq.Add(1)
	if err := unix.Sendto(s.fd, r.encode(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sendto: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			return fmt.Errorf("recvfrom: %w", err)
		}
		done, err := readMessages(s.buf[:n], seq, Proto(r.proto), each)
		if err != nil {
			var errno unix.Errno
			ok = errors.As(err, &errno) // a kernel error ends the answer cleanly
			return err
		}
		if done || !r.dump {
			ok = true
			return nil
		}
	}
}

// readMessages walks the netlink messages in b. done is true at
// NLMSG_DONE; a kernel error is returned as its unix.Errno.
func readMessages(b []byte, seq uint32, proto Proto, each func(Socket) error) (done bool, err error) {
	for len(b) >= nlmsgHdrLen {
		l := int(binary.LittleEndian.Uint32(b[0:]))
		typ := binary.LittleEndian.Uint16(b[4:])
		mseq := binary.LittleEndian.Uint32(b[8:])
		if l < nlmsgHdrLen || l > len(b) {
			return false, fmt.Errorf("malformed netlink message length %d of %d", l, len(b))
		}
		payload := b[nlmsgHdrLen:l]
		b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
		if mseq != seq {
			continue // a late answer to an earlier request
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return false, errors.New("short netlink error")
			}
			code := int32(binary.LittleEndian.Uint32(payload))
			if code == 0 {
				return true, nil // an acknowledgement
			}
			return false, unix.Errno(-code)
		case unix.SOCK_DIAG_BY_FAMILY:
			s, err := parseDiagMsg(proto, payload)
			if err != nil {
				return false, err
			}
			if err := each(s); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}
