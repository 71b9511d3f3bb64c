package policy

import "net/netip"

// AddrKind is what a destination address is, decided once per connection.
// The zero value, AddrInvalid, is always blocked.
type AddrKind uint8

const (
	AddrInvalid     AddrKind = iota // the zero netip.Addr: no destination known
	AddrPublic                      // anything not listed below
	AddrPrivate                     // RFC 1918, 198.18.0.0/15, fec0::/10, 64:ff9b:1::/48
	AddrCGNAT                       // 100.64.0.0/10 (RFC 6598)
	AddrLinkLocal                   // 169.254.0.0/16, fe80::/10
	AddrULA                         // fc00::/7 (RFC 4193)
	AddrMetadata                    // cloud metadata and credential endpoints
	AddrLoopback                    // 127.0.0.0/8, ::1
	AddrUnspecified                 // 0.0.0.0, ::
	AddrMulticast                   // 224.0.0.0/4, ff00::/8
	AddrBroadcast                   // 255.255.255.255
	AddrReserved                    // 0.0.0.0/8, 240.0.0.0/4, ::/96 (IPv4-compatible), 100::/64 (discard)
)

var addrKindNames = [...]string{
	AddrInvalid:     "invalid",
	AddrPublic:      "public",
	AddrPrivate:     "private",
	AddrCGNAT:       "cgnat",
	AddrLinkLocal:   "link_local",
	AddrULA:         "ula",
	AddrMetadata:    "metadata",
	AddrLoopback:    "loopback",
	AddrUnspecified: "unspecified",
	AddrMulticast:   "multicast",
	AddrBroadcast:   "broadcast",
	AddrReserved:    "reserved",
}

func (k AddrKind) String() string {
	if int(k) < len(addrKindNames) {
		return addrKindNames[k]
	}
	return "unknown"
}

// IsPrivate reports whether the kind is an internal network that
// allow_private_ips=false protects (DNS rebinding to the pod network, the
// node, or the VPC).
func (k AddrKind) IsPrivate() bool {
	switch k {
	case AddrPrivate, AddrCGNAT, AddrLinkLocal, AddrULA:
		return true
	}
	return false
}

// AlwaysBlocked reports whether no policy can allow the kind.
func (k AddrKind) AlwaysBlocked() bool {
	switch k {
	case AddrPublic, AddrPrivate, AddrCGNAT, AddrLinkLocal, AddrULA:
		return false
	}
	return true
}

// metadataAddrs are the cloud instance-metadata and credential endpoints:
// reaching one hands out the node's or pod's cloud credentials.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OCI, DigitalOcean IMDS
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS IMDS over IPv6
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud metadata
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task credentials
	netip.MustParseAddr("169.254.170.23"):  true, // AWS EKS Pod Identity agent
	netip.MustParseAddr("fd00:ec2::23"):    true, // AWS EKS Pod Identity agent over IPv6
}

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052: embeds IPv4 in the last 32 bits
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215: local-use, site-specific embedding
	sixToFour      = netip.MustParsePrefix("2002::/16")      // RFC 3056: embeds IPv4 in bits 16–47
	v4Compatible   = netip.MustParsePrefix("::/96")          // deprecated IPv4-compatible addresses
	discardOnly    = netip.MustParsePrefix("100::/64")       // RFC 6666 discard prefix
	multicast6     = netip.MustParsePrefix("ff00::/8")
	linkLocal6     = netip.MustParsePrefix("fe80::/10")
	siteLocal6     = netip.MustParsePrefix("fec0::/10")
	ula6           = netip.MustParsePrefix("fc00::/7")

	thisNet4    = netip.MustParsePrefix("0.0.0.0/8")
	private10   = netip.MustParsePrefix("10.0.0.0/8")
	cgnat4      = netip.MustParsePrefix("100.64.0.0/10")
	loopback4   = netip.MustParsePrefix("127.0.0.0/8")
	linkLocal4  = netip.MustParsePrefix("169.254.0.0/16")
	private172  = netip.MustParsePrefix("172.16.0.0/12")
	private192  = netip.MustParsePrefix("192.168.0.0/16")
	benchmark4  = netip.MustParsePrefix("198.18.0.0/15") // RFC 2544: lab networks, used internally (fake-IP DNS)
	multicast4  = netip.MustParsePrefix("224.0.0.0/4")
	reserved4   = netip.MustParsePrefix("240.0.0.0/4")
	broadcast4  = netip.MustParseAddr("255.255.255.255")
	unspecified = netip.IPv4Unspecified()
)

// canonicalAddr is the form every check compares: no zone, IPv4-mapped
// IPv6 as the IPv4 address it is on the wire.
func canonicalAddr(ip netip.Addr) netip.Addr {
	return ip.WithZone("").Unmap()
}

// ClassifyAddr says what kind of destination ip is. IPv4-mapped IPv6 is
// classified as its IPv4 address; NAT64 (64:ff9b::/96) and 6to4
// (2002::/16) addresses as the IPv4 address they embed, since that is
// where a translator delivers them. Documentation ranges (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are public: the test
// world uses them.
func ClassifyAddr(ip netip.Addr) AddrKind {
	ip = canonicalAddr(ip)
	if !ip.IsValid() {
		return AddrInvalid
	}
	if metadataAddrs[ip] {
		return AddrMetadata
	}
	if ip.Is4() {
		return classify4(ip)
	}
	switch {
	case nat64WellKnown.Contains(ip):
		b := ip.As16()
		return classify4(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(ip):
		b := ip.As16()
		return classify4(netip.AddrFrom4([4]byte(b[2:6])))
	case ip.IsUnspecified():
		return AddrUnspecified
	case ip.IsLoopback():
		return AddrLoopback
	case v4Compatible.Contains(ip), discardOnly.Contains(ip):
		return AddrReserved
	case multicast6.Contains(ip):
		return AddrMulticast
	case linkLocal6.Contains(ip):
		return AddrLinkLocal
	case siteLocal6.Contains(ip), nat64Local.Contains(ip):
		return AddrPrivate
	case ula6.Contains(ip):
		return AddrULA
	}
	return AddrPublic
}

func classify4(ip netip.Addr) AddrKind {
	if metadataAddrs[ip] {
		return AddrMetadata
	}
	switch {
	case ip == unspecified:
		return AddrUnspecified
	case ip == broadcast4:
		return AddrBroadcast
	case thisNet4.Contains(ip), reserved4.Contains(ip):
		return AddrReserved
	case loopback4.Contains(ip):
		return AddrLoopback
	case multicast4.Contains(ip):
		return AddrMulticast
	case linkLocal4.Contains(ip):
		return AddrLinkLocal
	case cgnat4.Contains(ip):
		return AddrCGNAT
	case private10.Contains(ip), private172.Contains(ip), private192.Contains(ip), benchmark4.Contains(ip):
		return AddrPrivate
	}
	return AddrPublic
}
