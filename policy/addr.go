package policy

import "net/netip"

// AddrKind is what a destination address is, decided once per connection.
// The zero value, AddrInvalid, is always blocked.
type AddrKind uint8

const (
	AddrInvalid     AddrKind = iota // the zero netip.Addr: no destination known
	AddrPublic                      // anything not listed below
	AddrPrivate                     // RFC 1918, 198.18.0.0/15, fec0::/10, 64:ff9b:1::/48 (unless what it embeds is worse)
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
// reaching one hands out the node's or pod's cloud credentials. Each is
// always denied, in every spelling (IPv4-mapped, NAT64, 6to4, Teredo…).
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"):    true, // AWS, GCP, Azure, OCI, DigitalOcean, OpenStack, Hetzner, Linode, Vultr, IBM IMDS
	netip.MustParseAddr("fd00:ec2::254"):      true, // AWS IMDS over IPv6
	netip.MustParseAddr("169.254.170.2"):      true, // AWS ECS task credentials
	netip.MustParseAddr("169.254.170.23"):     true, // AWS EKS Pod Identity agent
	netip.MustParseAddr("fd00:ec2::23"):       true, // AWS EKS Pod Identity agent over IPv6
	netip.MustParseAddr("168.63.129.16"):      true, // Azure WireServer (VM agent, extension config, certificates)
	netip.MustParseAddr("fd20:ce::254"):       true, // GCP metadata server over IPv6
	netip.MustParseAddr("169.254.169.252"):    true, // GKE metadata server (Workload Identity)
	netip.MustParseAddr("100.100.100.200"):    true, // Alibaba Cloud metadata
	netip.MustParseAddr("192.0.0.192"):        true, // Oracle Cloud legacy metadata
	netip.MustParseAddr("fd00:c1::a9fe:a9fe"): true, // Oracle Cloud IMDS over IPv6
	netip.MustParseAddr("169.254.0.23"):       true, // Tencent Cloud metadata
	netip.MustParseAddr("169.254.42.42"):      true, // Scaleway metadata
	netip.MustParseAddr("fd00:42::42"):        true, // Scaleway metadata over IPv6
	netip.MustParseAddr("fd00:a9fe:a9fe::1"):  true, // Akamai (Linode) metadata over IPv6
}

var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052: embeds IPv4 in the last 32 bits
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215: local-use, any RFC 6052 prefix length inside
	siit           = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 IPv4-translated (SIIT): last 32 bits
	teredo         = netip.MustParsePrefix("2001::/32")       // RFC 4380: server in bits 32–63, client (inverted) in the last 32
	sixToFour      = netip.MustParsePrefix("2002::/16")       // RFC 3056: embeds IPv4 in bits 16–47
	v4Compatible   = netip.MustParsePrefix("::/96")           // deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1)
	discardOnly    = netip.MustParsePrefix("100::/64")        // RFC 6666 discard prefix
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

// ClassifyAddr says what kind of destination ip is. IPv6 that embeds an
// IPv4 address is classified by the IPv4 inside, since a translator or
// tunnel delivers it there: IPv4-mapped (::ffff:0:0/96), SIIT
// (::ffff:0:0:0/96), NAT64 (64:ff9b::/96), NAT64 local-use
// (64:ff9b:1::/48, every RFC 6052 position, the strictest wins), 6to4
// (2002::/16), Teredo (2001::/32: the client and the server address, the
// stricter wins) and the deprecated IPv4-compatible form (::/96, reserved
// unless the address inside is worse). Documentation ranges (192.0.2.0/24,
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
	b := ip.As16()
	switch {
	case nat64WellKnown.Contains(ip), siit.Contains(ip):
		return classify4(v4At(b, 12))
	case nat64Local.Contains(ip):
		return classifyNAT64Local(b)
	case sixToFour.Contains(ip):
		return classify4(v4At(b, 2))
	case teredo.Contains(ip):
		client := v4At(b, 12).As4()
		for i := range client {
			client[i] ^= 0xff // RFC 4380 §4: the client's address is stored inverted
		}
		return stricter(classify4(netip.AddrFrom4(client)), classify4(v4At(b, 4)))
	case ip.IsUnspecified():
		return AddrUnspecified
	case ip.IsLoopback():
		return AddrLoopback
	case v4Compatible.Contains(ip):
		return stricter(classify4(v4At(b, 12)), AddrReserved)
	case discardOnly.Contains(ip):
		return AddrReserved
	case multicast6.Contains(ip):
		return AddrMulticast
	case linkLocal6.Contains(ip):
		return AddrLinkLocal
	case siteLocal6.Contains(ip):
		return AddrPrivate
	case ula6.Contains(ip):
		return AddrULA
	}
	return AddrPublic
}

// v4At is the IPv4 address in b[i:i+4].
func v4At(b [16]byte, i int) netip.Addr {
	return netip.AddrFrom4([4]byte(b[i : i+4]))
}

// classifyNAT64Local classifies an address in 64:ff9b:1::/48. RFC 8215
// lets a site use any RFC 6052 prefix length inside it, and which one the
// translator uses is not visible here, so every position whose form is
// valid (RFC 6052 §2.2: bits 64–71, the "u" octet, and the suffix after
// the IPv4 address are zero; /96 has neither) is decoded and the
// strictest kind wins — including the /96 reading of a shorter form,
// which is 0.0.0.0 and so blocked, as Forge's decoding of the last 32
// bits blocks it. The prefix is never public: at best it is private.
func classifyNAT64Local(b [16]byte) AddrKind {
	zero := func(bs []byte) bool {
		for _, c := range bs {
			if c != 0 {
				return false
			}
		}
		return true
	}
	u := b[8] == 0
	candidates := [...]struct {
		valid bool
		v4    [4]byte
	}{
		{u && zero(b[11:]), [4]byte{b[6], b[7], b[9], b[10]}},   // /48
		{u && zero(b[12:]), [4]byte{b[7], b[9], b[10], b[11]}},  // /56
		{u && zero(b[13:]), [4]byte{b[9], b[10], b[11], b[12]}}, // /64
		{true, [4]byte(b[12:16])},                               // /96
	}
	k := AddrPrivate
	for _, c := range candidates {
		if c.valid {
			k = stricter(k, classify4(netip.AddrFrom4(c.v4)))
		}
	}
	return k
}

// severity ranks kinds for stricter: metadata first, then every other
// always-blocked kind, then the private kinds, then public.
func (k AddrKind) severity() int {
	switch {
	case k == AddrMetadata:
		return 3
	case k.AlwaysBlocked():
		return 2
	case k.IsPrivate():
		return 1
	}
	return 0
}

// stricter is whichever of a and b no policy allows more readily.
func stricter(a, b AddrKind) AddrKind {
	if b.severity() > a.severity() {
		return b
	}
	return a
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
