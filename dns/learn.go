package dns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds how many CNAME hops are followed from the question
// name. Real chains are under 10 hops (CDNs use 2–4); the bound also stops
// a hostile upstream's CNAME loop.
const maxCNAMEChain = 16

// learnedAddr is one address an answer gave for the question name, with the
// lowest TTL along the CNAME chain that led to it.
type learnedAddr struct {
	ip  netip.Addr
	ttl time.Duration
}

// chainAddrs returns the A and AAAA records of answer that belong to qname,
// following CNAMEs from qname. Records owned by names off the chain are
// ignored: an upstream cannot make the proxy learn an address for a name it
// was not asked about by putting it in the answer.
func chainAddrs(qname string, answer []dns.RR) []learnedAddr {
	target := qname
	chainTTL := ^uint32(0)
	for range maxCNAMEChain {
		next := ""
		for _, rr := range answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, target) {
				next = c.Target
				chainTTL = min(chainTTL, c.Hdr.Ttl)
				break
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var out []learnedAddr
	for _, rr := range answer {
		h := rr.Header()
		if !strings.EqualFold(h.Name, target) || h.Class != dns.ClassINET {
			continue
		}
		var raw []byte
		switch r := rr.(type) {
		case *dns.A:
			raw = r.A.To4()
		case *dns.AAAA:
			raw = r.AAAA.To16()
		default:
			continue
		}
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		ttl := min(chainTTL, h.Ttl)
		out = append(out, learnedAddr{ip: ip.Unmap(), ttl: time.Duration(ttl) * time.Second})
	}
	return out
}
