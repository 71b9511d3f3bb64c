package dns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// chainAddrs is the reference for wireChainAddrs, over miekg's unpacked
// records: the A and AAAA records of answer that belong to qname,
// following CNAMEs from qname, with the lowest TTL along the chain.
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
