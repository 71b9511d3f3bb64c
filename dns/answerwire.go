package dns

import (
	"encoding/binary"
	"slices"
	"strings"
	"time"
)

const (
	typeSOA        = 6
	rcodeNoError   = 0
	rcodeNameError = 3
	// soaFixedTail is SERIAL, REFRESH, RETRY, EXPIRE and MINIMUM after
	// the SOA's two names.
	soaFixedTail = 20
)

// newCachedAnswer makes a cache entry of msg, an upstream answer that
// parseAnswer accepted (and that the caller no longer changes), or
// reports that it is not to be cached. Cached are: answers with records
// (for the lowest TTL among them) and, per RFC 2308, NXDOMAIN and NODATA
// answers with an SOA in the authority section (for the lower of its TTL
// and MINIMUM). Not cached: truncated answers, every other rcode
// (SERVFAIL and REFUSED are asked again at the next query), answers with a
// zero TTL, and answers whose OPT record is not the last record (its
// options could not be cut without moving other records). The OPT record's
// options (the upstream's cookie, padding, NSID, errors) are cut: they
// belong to the exchange that fetched the answer, not to later ones.
func newCachedAnswer(key answerKey, msg []byte, a wireAnswer, addrs []learnedAddr, now time.Time) (*cachedAnswer, bool) {
	if a.truncated || len(msg) < headerLen {
		return nil, false
	}
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	var scratch [maxWireName]byte
	_, off, err := wireName(msg, headerLen, scratch[:])
	if err != nil {
		return nil, false
	}
	off += 4
	e := &cachedAnswer{key: key, rcode: a.rcode, addrs: addrs, stored: now}
	minTTL, negTTL := ^uint32(0), ^uint32(0)
	optRdata, records := -1, 0
	var addrData [][2]int // A and AAAA rdata: addresses, never names
	for i := range an + ns + ar {
		if off == len(msg) {
			break
		}
		if optRdata >= 0 {
			return nil, false // a record after the OPT
		}
		_, next, err := wireName(msg, off, scratch[:])
		if err != nil || next+rrFixedPart > len(msg) {
			return nil, false
		}
		rtype := binary.BigEndian.Uint16(msg[next:])
		ttl := binary.BigEndian.Uint32(msg[next+4:])
		rdata := next + rrFixedPart
		rdlen := int(binary.BigEndian.Uint16(msg[next+8:]))
		if rdata+rdlen > len(msg) {
			return nil, false
		}
		off = rdata + rdlen
		if rtype == typeOPT && i >= an+ns {
			optRdata = rdata
			continue
		}
		records++
		e.ttlOffs = append(e.ttlOffs, uint16(next+4))
		if rtype == typeA || rtype == typeAAAA {
			addrData = append(addrData, [2]int{rdata, rdata + rdlen})
		}
		minTTL = min(minTTL, ttl)
		if rtype == typeSOA && i >= an && i < an+ns && rdlen >= soaFixedTail+2 {
			negTTL = min(negTTL, ttl, binary.BigEndian.Uint32(msg[rdata+rdlen-4:]))
		}
	}
	if off != len(msg) {
		return nil, false
	}
	var ttl, limit uint32
	switch {
	case a.rcode == rcodeNoError && an > 0:
		ttl, limit = minTTL, uint32(maxPositiveTTL/time.Second)
	case (a.rcode == rcodeNoError || a.rcode == rcodeNameError) && negTTL != ^uint32(0):
		ttl, limit = negTTL, uint32(maxNegativeTTL/time.Second)
	default:
		return nil, false
	}
	if records == 0 || ttl == 0 {
		return nil, false
	}
	if pointsIntoRewritten(msg, e.ttlOffs, optRdata, addrData) {
		return nil, false
	}
	e.expires = now.Add(time.Duration(min(ttl, limit)) * time.Second)
	if optRdata >= 0 {
		msg = msg[:optRdata]
		binary.BigEndian.PutUint16(msg[optRdata-2:], 0)
	}
	binary.BigEndian.PutUint16(msg, 0)
	e.msg = msg
	return e, true
}

// pointsIntoRewritten reports whether a name read through a compression
// pointer of msg would read a byte the cache rewrites: the ID, a TTL, or
// the OPT record's length and options (optRdata < 0: none). Such a name
// would change as the copy ages, and clients would get a message that no
// longer parses; only a hostile or broken upstream writes one, and its
// answer is not cached. Conservative on purpose: every two bytes that could
// be a pointer (top bits 11) count, rdata that merely looks like one too
// (but for addrData, the A and AAAA addresses, which hold no name), at the
// cost of a cache miss; the labels read from a pointer's target are
// followed up to their end (a zero byte or the next pointer, which is
// itself one of the pairs checked).
func pointsIntoRewritten(msg []byte, ttlOffs []uint16, optRdata int, addrData [][2]int) bool {
	rewritten := func(lo, hi int) bool { // [lo, hi) meets a rewritten byte
		if lo < 2 || (optRdata >= 0 && hi > optRdata-2) {
			return true
		}
		for _, off := range ttlOffs {
			if lo < int(off)+4 && hi > int(off) {
				return true
			}
		}
		return false
	}
	for i := headerLen; i+1 < len(msg); i++ {
		if msg[i]&0xC0 != 0xC0 {
			continue
		}
		if k := slices.IndexFunc(addrData, func(r [2]int) bool { return i >= r[0] && i < r[1] }); k >= 0 {
			i = addrData[k][1] - 1
			continue
		}
		start := int(binary.BigEndian.Uint16(msg[i:]) & 0x3FFF)
		end := start
		for end < len(msg) {
			b := msg[end]
			if b == 0 || b&0xC0 != 0 {
				end += 2 // the root label or a pointer (two bytes; one more is harmless)
				break
			}
			end += 1 + int(b)
		}
		if start < len(msg) && rewritten(start, min(end, len(msg))) {
			return true
		}
	}
	return false
}

// copyAnswer writes the cached answer, aged by elapsed, into dst (which
// must hold it) and returns it: every TTL but the OPT's is decremented by
// the whole seconds elapsed, as a resolver's cache does.
func (e *cachedAnswer) copyAnswer(dst []byte, elapsed time.Duration) []byte {
	out := dst[:copy(dst[:cap(dst)], e.msg)]
	if len(out) < len(e.msg) {
		out = append([]byte(nil), e.msg...)
	}
	age := uint32(max(elapsed, 0) / time.Second)
	for _, off := range e.ttlOffs {
		ttl := binary.BigEndian.Uint32(e.msg[off:])
		binary.BigEndian.PutUint32(out[off:], ttl-min(ttl, age))
	}
	return out
}

// addrsAged returns e's learned addresses with their TTLs less elapsed.
func (e *cachedAnswer) addrsAged(elapsed time.Duration) []learnedAddr {
	out := make([]learnedAddr, len(e.addrs))
	for i, a := range e.addrs {
		out[i] = learnedAddr{ip: a.ip, ttl: max(a.ttl-elapsed, 0)}
	}
	return out
}

// setQuestionSpelling writes the agent's own spelling of the question name
// (qname, presentation form) over the question of msg, which holds the
// same name in another case: clients compare the question they get back
// (some use 0x20 randomization). A name with escapes is left as it is: it
// cannot be an allowed name, whose characters are letters, digits, '-' and
// '_'.
func setQuestionSpelling(msg []byte, qname string) {
	if strings.IndexByte(qname, '\\') >= 0 {
		return
	}
	// Check first that the names match (ignoring case), then write.
	for pass := range 2 {
		off, i := headerLen, 0
		for {
			if off >= len(msg) {
				return
			}
			n := int(msg[off])
			if n == 0 {
				break
			}
			if n&0xC0 != 0 || off+1+n > len(msg) || i+n > len(qname) {
				return
			}
			label := msg[off+1 : off+1+n]
			if pass == 0 && !equalFoldASCII(label, qname[i:i+n]) {
				return
			}
			if pass == 1 {
				copy(label, qname[i:i+n])
			}
			off += 1 + n
			i += n
			if i < len(qname) && qname[i] == '.' {
				i++
			}
		}
		if i != len(qname) {
			return
		}
	}
}
