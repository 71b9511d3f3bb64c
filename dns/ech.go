package dns

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// svcParamECH is the SvcParamKey of an Encrypted ClientHello config (RFC
// 9460 §14.3.2, the ECH draft's "ech").
const svcParamECH = 5

// Encrypted ClientHello hides the name a client connects to behind an
// outer SNI (the provider's public name), so the connection engine would
// see and check only the outer one. Clients learn ECH configs from the ech
// SvcParam of HTTPS/SVCB records; the proxy strips it, as enterprise
// firewalls do, so clients send their real name in the clear.

// hasECH reports whether the HTTPS or SVCB record r carries an ech
// SvcParam. RDATA: SvcPriority (2 bytes), TargetName (a name), then
// SvcParams of key (2), length (2) and value up to the record's end. A
// record it cannot walk counts as carrying one, so it is repacked (and
// miekg's stricter unpacking decides).
func hasECH(msg []byte, r rrRef, scratch []byte) bool {
	end := r.rdata + r.rdlen
	if r.rdlen < 3 {
		return false // too short to hold a priority and a name: no params
	}
	_, off, err := wireName(msg, r.rdata+2, scratch)
	if err != nil || off > end {
		return true
	}
	for off+4 <= end {
		key := binary.BigEndian.Uint16(msg[off:])
		n := int(binary.BigEndian.Uint16(msg[off+2:]))
		if key == svcParamECH {
			return true
		}
		off += 4 + n
	}
	return off != end
}

// stripECH removes the ech SvcParam from every HTTPS and SVCB record of m,
// in every section, and reports whether it removed any.
func stripECH(m *dns.Msg) bool {
	stripped := false
	for _, section := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			var svcb *dns.SVCB
			switch rr := rr.(type) {
			case *dns.HTTPS:
				svcb = &rr.SVCB
			case *dns.SVCB:
				svcb = rr
			default:
				continue
			}
			kept := svcb.Value[:0]
			for _, kv := range svcb.Value {
				if kv.Key() == svcParamECH {
					stripped = true
					continue
				}
				kept = append(kept, kv)
			}
			svcb.Value = kept
		}
	}
	return stripped
}
