package dns

import (
	"net/netip"
	"time"
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
