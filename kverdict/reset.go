package kverdict

import (
	"encoding/binary"
	"fmt"

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
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:2], k.src.Port())
	binary.BigEndian.PutUint16(tcp[2:4], k.dst.Port())
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	tcp[12] = 5 << 4
	tcp[13] = tcpRST
	src, dst := k.src.Addr().AsSlice(), k.dst.Addr().AsSlice()
	binary.BigEndian.PutUint16(tcp[16:18], tcpChecksum(src, dst, tcp))
	var pkt []byte
	var fd int
	var sa unix.Sockaddr
	if k.dst.Addr().Is4() {
		pkt = make([]byte, 20, 40)
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:4], 40)
		pkt[6] = 0x40 // don't fragment
		pkt[8] = 64
		pkt[9] = unix.IPPROTO_TCP
		copy(pkt[12:16], src)
		copy(pkt[16:20], dst)
		binary.BigEndian.PutUint16(pkt[10:12], checksum(pkt, 0))
		fd, sa = r.fd4, &unix.SockaddrInet4{Addr: k.dst.Addr().As4()}
	} else {
		pkt = make([]byte, 40, 60)
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:6], 20)
		pkt[6] = unix.IPPROTO_TCP
		pkt[7] = 64
		copy(pkt[8:24], src)
		copy(pkt[24:40], dst)
		fd, sa = r.fd6, &unix.SockaddrInet6{Addr: k.dst.Addr().As16()}
	}
	pkt = append(pkt, tcp...)
	if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
		return fmt.Errorf("kverdict: reset %s→%s: %w", k.src, k.dst, err)
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
