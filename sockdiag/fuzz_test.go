package sockdiag

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// diagMessage is a netlink SOCK_DIAG_BY_FAMILY message as the kernel sends
// it for an IPv4 TCP socket 127.0.0.1:40000 → 127.0.0.1:443, uid 1000,
// inode 4242.
func diagMessage(seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+diagMsgLen)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)))
	binary.LittleEndian.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.LittleEndian.PutUint32(b[8:], seq)
	m := b[nlmsgHdrLen:]
	m[0], m[1] = unix.AF_INET, StateEstablished
	binary.BigEndian.PutUint16(m[4:], 40000)
	binary.BigEndian.PutUint16(m[6:], 443)
	copy(m[8:], []byte{127, 0, 0, 1})
	copy(m[24:], []byte{127, 0, 0, 1})
	binary.LittleEndian.PutUint32(m[4+sockIDLen+12:], 1000)
	binary.LittleEndian.PutUint32(m[4+sockIDLen+16:], 4242)
	return b
}

func TestReadMessages(t *testing.T) {
	var got []Socket
	done, err := readMessages(diagMessage(7), 7, TCP, func(s Socket) error { got = append(got, s); return nil })
	if err != nil || done || len(got) != 1 {
		t.Fatalf("done=%v err=%v got=%+v", done, err, got)
	}
	s := got[0]
	if s.Src.String() != "127.0.0.1:40000" || s.Dst.String() != "127.0.0.1:443" || s.UID != 1000 || s.Inode != 4242 {
		t.Errorf("decoded %+v", s)
	}
	// Another sequence number is a late answer: skipped.
	got = nil
	if _, err := readMessages(diagMessage(6), 7, TCP, func(s Socket) error { got = append(got, s); return nil }); err != nil || len(got) != 0 {
		t.Errorf("stale message: %v %+v", err, got)
	}
}

func FuzzReadMessages(f *testing.F) {
	f.Add(diagMessage(1))
	f.Add(append(diagMessage(1), diagMessage(1)...))
	f.Add([]byte{16, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}) // NLMSG_DONE
	f.Add([]byte{20, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 254, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readMessages(b, 1, TCP, func(s Socket) error {
			if !s.Src.IsValid() || !s.Dst.IsValid() {
				t.Fatalf("invalid addresses decoded: %+v", s)
			}
			return nil
		})
	})
}
