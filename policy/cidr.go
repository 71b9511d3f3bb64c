package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// parseCIDR reads one allowed_private_cidrs entry with Forge's meaning: an
// exemption from the private-IP block for the addresses inside, never a
// grant (a domain or allowed_tcp rule must still match). Any prefix
// length loads. The warning, if not empty, says what the entry does not
// do: host bits set (the prefix is masked, as Go's net.ParseCIDR does),
// no private address inside (it exempts nothing), or every private range
// of its family inside (the same as allow_private_ips for it).
func parseCIDR(entry string) (netip.Prefix, string, error) {
	prefix, err := netip.ParsePrefix(entry)
	if err != nil {
		if ip, ipErr := netip.ParseAddr(entry); ipErr == nil {
			return netip.Prefix{}, "", fmt.Errorf("missing prefix length; for one address write %s/%d", ip, ip.BitLen())
		}
		return netip.Prefix{}, "", fmt.Errorf(`not a CIDR like "10.0.0.0/8" or "fd00::/8": %v`, err)
	}
	addr := prefix.Addr()
	switch {
	case addr.Zone() != "":
		return netip.Prefix{}, "", errors.New("a zoned address (with %) cannot be a CIDR; remove the zone")
	case addr.Is4In6():
		return netip.Prefix{}, "", errors.New(`write IPv4 CIDRs in IPv4 form, like "10.0.0.0/8"`)
	}
	var warning string
	if masked := prefix.Masked(); masked != prefix {
		warning = fmt.Sprintf("host bits are set; read as %s. ", masked)
		prefix = masked
	}
	switch privateOverlap(prefix) {
	case overlapNone:
		warning += "it holds no private address, so it exempts nothing: allowed_private_cidrs only lifts the private-IP block, it never allows a destination by itself (write allowed_tcp rules for that)"
	case overlapAll:
		warning += fmt.Sprintf("it holds every private range of IPv%d: the same as allow_private_ips for them; it still allows nothing by itself (a domain or allowed_tcp rule must match)", map[bool]int{true: 4, false: 6}[addr.Is4()])
	}
	return prefix, strings.TrimSpace(warning), nil
}

// privateRanges are the ranges ClassifyAddr calls private, for the
// warnings of parseCIDR.
var privateRanges = []netip.Prefix{
	private10, private172, private192, benchmark4, cgnat4, linkLocal4,
	linkLocal6, siteLocal6, ula6, nat64Local,
}

type overlap uint8

const (
	overlapSome overlap = iota
	overlapNone
	overlapAll
)

func privateOverlap(prefix netip.Prefix) overlap {
	some, all := false, true
	for _, r := range privateRanges {
		if r.Addr().Is4() != prefix.Addr().Is4() {
			continue
		}
		if prefix.Overlaps(r) {
			some = true
		}
		if !(prefix.Bits() <= r.Bits() && prefix.Contains(r.Addr())) {
			all = false
		}
	}
	switch {
	case !some:
		return overlapNone
	case all:
		return overlapAll
	}
	return overlapSome
}
