package dns

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Upstream answers are checked and learned from in wire form, then passed
// to the agent as the upstream sent them (with the agent's ID): unpacking
// and repacking every answer costs more than the rest of the forwarding.
// The walker below checks the whole message's structure (every name,
// every record's bounds) but decodes only what the proxy uses: the
// question, A, AAAA and CNAME records of the answer section, and the OPT
// record's extended rcode.

const (
	headerLen = 12
	// maxWireName is the RFC 1035 limit on a name in wire form.
	maxWireName = 255
	// maxPointers bounds compression pointers followed in one name: a
	// 255-byte name has at most 127 labels, so more pointers than that
	// can only be a loop.
	maxPointers = 127
	// stackRRs is how many answer records are indexed without a heap
	// allocation: real answers have a handful, CDN chains about ten.
	stackRRs = 32
)

// DNS header bits and record types the walker reads (numbers of RFC 1035,
// RFC 3596, RFC 6891).
const (
	bitQR       = 1 << 15
	bitTC       = 1 << 9
	typeA       = 1
	typeCNAME   = 5
	typeAAAA    = 28
	typeOPT     = 41
	typeSVCB    = 64
	typeHTTPS   = 65
	classINET   = 1
	rrFixedPart = 10 // type, class, TTL, RDLENGTH
)

var (
	errShort      = errors.New("message cut short")
	errBadName    = errors.New("malformed name")
	errBadRR      = errors.New("malformed record")
	errNotAnswer  = errors.New("not an answer to the query")
	errTrailingRR = errors.New("record data does not match its length")
)

// wireName decodes the name at off in msg into dst as uncompressed wire
// labels, lower-cased (ASCII), ending with the root label, following
// compression pointers. It returns the decoded name and the offset just
// past the name where it starts (past the first pointer, if any).
func wireName(msg []byte, off int, dst []byte) (name []byte, next int, err error) {
	name = dst[:0]
	next = -1
	for ptrs := 0; ; {
		if off >= len(msg) {
			return nil, 0, errShort
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if off+1+c > len(msg) {
				return nil, 0, errShort
			}
			if len(name)+1+c > maxWireName {
				return nil, 0, errBadName
			}
			name = append(name, byte(c))
			for _, b := range msg[off+1 : off+1+c] {
				if b >= 'A' && b <= 'Z' {
					b += 'a' - 'A'
				}
				name = append(name, b)
			}
			off += 1 + c
			if c == 0 {
				if next < 0 {
					next = off
				}
				return name, next, nil
			}
		case 0xC0:
			if off+1 >= len(msg) {
				return nil, 0, errShort
			}
			if ptrs++; ptrs > maxPointers {
				return nil, 0, errBadName
			}
			if next < 0 {
				next = off + 2
			}
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3FFF)
		default: // 0x40 and 0x80: extended label types, obsolete
			return nil, 0, errBadName
		}
	}
}

// rrRef locates one record of the answer section.
type rrRef struct {
	owner int // offset of the owner name
	rtype uint16
	class uint16
	ttl   uint32
	rdata int // offset of RDATA
	rdlen int
}

// wireAnswer is what the proxy needs of an upstream answer.
type wireAnswer struct {
	rcode     int  // with the OPT record's extended bits
	truncated bool // TC
	ech       bool // an HTTPS or SVCB record carries an ech SvcParam
	answers   []rrRef
}

// questionEnd returns the offset just past the single question of msg, a
// message this proxy packed (uncompressed question name).
func questionEnd(msg []byte) (int, error) {
	var buf [maxWireName]byte
	_, next, err := wireName(msg, headerLen, buf[:])
	if err != nil {
		return 0, err
	}
	if next+4 > len(msg) {
		return 0, errShort
	}
	return next + 4, nil
}

// parseAnswer checks that msg answers query (sent by this proxy, with
// the ID it carries): same ID, QR set, same opcode, exactly one question
// equal to the query's (case-insensitively: resolvers may echo a
// 0x20-randomized spelling, so the question must not use compression),
// and every record within bounds. rrs is scratch space for the answer
// section's index. The returned answers alias rrs when it is big enough.
func parseAnswer(msg, query []byte, rrs []rrRef) (wireAnswer, error) {
	if len(msg) < headerLen || len(query) < headerLen {
		return wireAnswer{}, errShort
	}
	bits := binary.BigEndian.Uint16(msg[2:])
	qbits := binary.BigEndian.Uint16(query[2:])
	if msg[0] != query[0] || msg[1] != query[1] || bits&bitQR == 0 ||
		(bits>>11)&0xF != (qbits>>11)&0xF || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return wireAnswer{}, errNotAnswer
	}
	qend, err := questionEnd(query)
	if err != nil {
		return wireAnswer{}, err
	}
	if len(msg) < qend || !equalFoldASCII(msg[headerLen:qend], query[headerLen:qend]) {
		return wireAnswer{}, errNotAnswer
	}
	a := wireAnswer{rcode: int(bits & 0xF), truncated: bits&bitTC != 0, answers: rrs[:0]}
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	extRcode := 0
	off := qend
	var scratch [maxWireName]byte
	for i := range an + ns + ar {
		if off == len(msg) {
			// Fewer records than counted, ending on a record boundary:
			// miekg's unpacking accepts such answers (some servers send
			// them when they truncate), and so does the proxy.
			break
		}
		owner := off
		_, next, err := wireName(msg, off, scratch[:])
		if err != nil {
			return wireAnswer{}, err
		}
		if next+rrFixedPart > len(msg) {
			return wireAnswer{}, errShort
		}
		r := rrRef{
			owner: owner,
			rtype: binary.BigEndian.Uint16(msg[next:]),
			class: binary.BigEndian.Uint16(msg[next+2:]),
			ttl:   binary.BigEndian.Uint32(msg[next+4:]),
			rdata: next + rrFixedPart,
			rdlen: int(binary.BigEndian.Uint16(msg[next+8:])),
		}
		if r.rdata+r.rdlen > len(msg) {
			return wireAnswer{}, errShort
		}
		off = r.rdata + r.rdlen
		if (r.rtype == typeHTTPS || r.rtype == typeSVCB) && hasECH(msg, r, scratch[:]) {
			a.ech = true
		}
		switch {
		case i < an:
			if err := checkRdata(msg, r, scratch[:]); err != nil {
				return wireAnswer{}, err
			}
			a.answers = append(a.answers, r)
		case i >= an+ns && r.rtype == typeOPT:
			// RFC 6891: the OPT TTL's top byte holds the upper 8 bits of
			// the 12-bit rcode. The last OPT of the additional section
			// counts, as in miekg's IsEdns0.
			extRcode = int(r.ttl>>24) << 4
		}
	}
	a.rcode |= extRcode
	return a, nil
}

// checkRdata checks the RDATA of the record types the proxy learns from.
// An A or AAAA record of the wrong length is malformed, except an empty
// one (RFC 2136 uses those; it carries no address and is not learned).
func checkRdata(msg []byte, r rrRef, scratch []byte) error {
	switch r.rtype {
	case typeA:
		if r.rdlen != 4 && r.rdlen != 0 {
			return errBadRR
		}
	case typeAAAA:
		if r.rdlen != 16 && r.rdlen != 0 {
			return errBadRR
		}
	case typeCNAME:
		if r.rdlen == 0 {
			return nil // no target: ends a chain
		}
		_, next, err := wireName(msg, r.rdata, scratch)
		if err != nil {
			return err
		}
		if next != r.rdata+r.rdlen {
			return errTrailingRR
		}
	}
	return nil
}

// equalFoldASCII compares two byte strings (either may be a string),
// ignoring ASCII case.
func equalFoldASCII[A, B ~string | ~[]byte](a A, b B) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// wireChainAddrs is chainAddrs for a parsed wire answer: the A and AAAA
// records that belong to the question name, following CNAMEs from it, each
// with the lowest TTL along its chain. Records owned by names off the
// chain are ignored.
func wireChainAddrs(msg []byte, a wireAnswer) []learnedAddr {
	var tbuf, obuf [maxWireName]byte
	target, _, err := wireName(msg, headerLen, tbuf[:])
	if err != nil {
		return nil
	}
	chainTTL := ^uint32(0)
	for range maxCNAMEChain {
		found := false
		for _, r := range a.answers {
			if r.rtype != typeCNAME || !ownerIs(msg, r, target, obuf[:]) {
				continue
			}
			chainTTL = min(chainTTL, r.ttl)
			if r.rdlen == 0 {
				break // an empty CNAME ends the chain where it is
			}
			// The next target replaces the current one in tbuf: decode
			// into obuf first, then copy.
			next, _, err := wireName(msg, r.rdata, obuf[:])
			if err != nil {
				return nil
			}
			target = tbuf[:copy(tbuf[:], next)]
			found = true
			break
		}
		if !found {
			break
		}
	}
	var out []learnedAddr
	for _, r := range a.answers {
		if r.class != classINET || !ownerIs(msg, r, target, obuf[:]) {
			continue
		}
		var ip netip.Addr
		switch {
		case r.rtype == typeA && r.rdlen == 4:
			ip = netip.AddrFrom4([4]byte(msg[r.rdata:]))
		case r.rtype == typeAAAA && r.rdlen == 16:
			ip = netip.AddrFrom16([16]byte(msg[r.rdata:])).Unmap()
		default:
			continue
		}
		ttl := min(chainTTL, r.ttl)
		out = append(out, learnedAddr{ip: ip, ttl: time.Duration(ttl) * time.Second})
	}
	return out
}

// ownerIs reports whether r's owner name is name (lower-cased wire form).
func ownerIs(msg []byte, r rrRef, name, scratch []byte) bool {
	owner, _, err := wireName(msg, r.owner, scratch)
	return err == nil && string(owner) == string(name)
}
