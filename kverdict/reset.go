package kverdict

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// resetter sends the server the reset its client never will: a denied
// flow's held segments never reach it, so without one it would sit
// half-open until its own timeouts. The packets leave from raw sockets
// that carry the supervisor's mark, so the agent's rules never see them.
type resetter struct {
	fd4, fd6 int
}

func openResetter(mark uint32) (*resetter, error) {
	r := &resetter{fd4: -1, fd6: -1}
	var err error
	if r.fd4, err = rawSocket(unix.AF_INET, mark); err != nil {
		return nil, err
	}
	if r.fd6, err = rawSocket(unix.AF_INET6, mark); err != nil {
		unix.Close(r.fd4)
		return nil, err
	}
	return r, nil
}

// rawSocket opens an IPPROTO_RAW socket: the caller writes the IP header
// itself (IP_HDRINCL is implied, for IPv6 since Linux 4.5).
func rawSocket(family int, mark uint32) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("kverdict: raw socket for resets: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("kverdict: SO_MARK on the reset socket: %w", err)
	}
	return fd, nil
}

func (r *resetter) close() {
	unix.Close(r.fd4)
	unix.Close(r.fd6)
}

// resetServer sends a RST from the client's side of k with sequence number
// seq: the server's next expected byte, since it has received none of the
// client's payload. A RST at exactly rcv_nxt is accepted (RFC 5961 §3.2).
func (r *resetter) resetServer(k flowKey, seq uint32) error {
	return r.send(k.src, k.dst, seq, 0, tcpRST, nil)
}

// answerClient sends the client, as if from the server, payload and a FIN:
// the denial in the client's protocol (a TLS alert, an HTTP 403), as the
// proxy answers. seq is the server's next sequence number (the client's
// acknowledgement number) and ack acknowledges everything the client sent,
// so it does not retransmit what was refused.
func (r *resetter) answerClient(k flowKey, seq, ack uint32, payload []byte) error {
	return r.send(k.dst, k.src, seq, ack, tcpACK|tcpPSH|tcpFIN, payload)
}

// ackClient acknowledges, as if from the server, the client's bytes up to
// ack, so that a head split over many segments keeps coming while they are
// held. The window is left unscaled at its maximum: the worker holds at
// most maxHeld bytes, below any server's initial window.
func (r *resetter) ackClient(k flowKey, seq, ack uint32) error {
	return r.send(k.dst, k.src, seq, ack, tcpACK, nil)
}

// send writes one TCP segment from src to dst through the raw sockets.
func (r *resetter) send(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload []byte) error {
	tcp := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:2], src.Port())
	binary.BigEndian.PutUint16(tcp[2:4], dst.Port())
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], ack)
	tcp[12] = 5 << 4
	tcp[13] = flags
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint16(tcp[14:16], 0xffff) // window
	}
	tcp = append(tcp, payload...)
	sa, da := src.Addr().AsSlice(), dst.Addr().AsSlice()
	binary.BigEndian.PutUint16(tcp[16:18], tcpChecksum(sa, da, tcp))
	var pkt []byte
	var fd int
	var to unix.Sockaddr
	if dst.Addr().Is4() {
		pkt = make([]byte, 20, 20+len(tcp))
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:4], uint16(20+len(tcp)))
		pkt[6] = 0x40 // don't fragment
		pkt[8] = 64
		pkt[9] = unix.IPPROTO_TCP
		copy(pkt[12:16], sa)
		copy(pkt[16:20], da)
		binary.BigEndian.PutUint16(pkt[10:12], checksum(pkt, 0))
		fd, to = r.fd4, &unix.SockaddrInet4{Addr: dst.Addr().As4()}
	} else {
		pkt = make([]byte, 40, 40+len(tcp))
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:6], uint16(len(tcp)))
		pkt[6] = unix.IPPROTO_TCP
		pkt[7] = 64
		copy(pkt[8:24], sa)
		copy(pkt[24:40], da)
		fd, to = r.fd6, &unix.SockaddrInet6{Addr: dst.Addr().As16()}
	}
	pkt = append(pkt, tcp...)
	if err := unix.Sendto(fd, pkt, 0, to); err != nil {
		return fmt.Errorf("kverdict: segment %s→%s: %w", src, dst, err)
	}
	return nil
}

// tcpChecksum is the TCP checksum over the pseudo-header and segment.
func tcpChecksum(src, dst, seg []byte) uint16 {
	var sum uint32
	for _, a := range [][]byte{src, dst} {
		for i := 0; i+1 < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	return checksum(seg, sum)
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
