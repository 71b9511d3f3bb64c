package policy

import (
	"net/netip"
	"testing"
)

func TestClassifyAddr(t *testing.T) {
	tests := []struct {
		ip   string
		want AddrKind
	}{
		// Cloud metadata, in every spelling.
		{"169.254.169.254", AddrMetadata},
		{"::ffff:169.254.169.254", AddrMetadata},
		{"64:ff9b::a9fe:a9fe", AddrMetadata},
		{"64:ff9b::169.254.169.254", AddrMetadata},
		{"2002:a9fe:a9fe::1", AddrMetadata},
		{"fd00:ec2::254", AddrMetadata},
		{"100.100.100.200", AddrMetadata},
		{"::ffff:100.100.100.200", AddrMetadata},
		{"169.254.170.2", AddrMetadata},
		{"169.254.170.23", AddrMetadata},
		{"fd00:ec2::23", AddrMetadata},
		// Every major cloud's metadata endpoint (issue #11 item 12).
		{"168.63.129.16", AddrMetadata},      // Azure WireServer
		{"fd20:ce::254", AddrMetadata},       // GCP over IPv6
		{"169.254.169.252", AddrMetadata},    // GKE metadata server
		{"192.0.0.192", AddrMetadata},        // Oracle legacy
		{"fd00:c1::a9fe:a9fe", AddrMetadata}, // Oracle over IPv6
		{"169.254.0.23", AddrMetadata},       // Tencent
		{"169.254.42.42", AddrMetadata},      // Scaleway
		{"fd00:42::42", AddrMetadata},        // Scaleway over IPv6
		{"fd00:a9fe:a9fe::1", AddrMetadata},  // Akamai/Linode over IPv6
		// Every embedding of IPv4 in IPv6, decoded.
		{"64:ff9b:1::a9fe:a9fe", AddrMetadata},                 // NAT64 local-use, /96 position
		{"64:ff9b:1:a9fe:a9:fe00::", AddrMetadata},             // NAT64 local-use, /48 position
		{"64:ff9b:1:a9:fe:a9fe::", AddrMetadata},               // NAT64 local-use, /64 position
		{"::ffff:0:a9fe:a9fe", AddrMetadata},                   // SIIT
		{"::ffff:0:a83f:8110", AddrMetadata},                   // SIIT of Azure WireServer
		{"2001:0:4136:e378:8000:63bf:5601:5601", AddrMetadata}, // Teredo, client 169.254.169.254 inverted
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", AddrLoopback}, // Teredo, client 127.0.0.1 inverted (Forge's test)
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", AddrPrivate},  // Teredo, client 10.0.0.1 inverted (Forge's test)
		{"2001:0:a9fe:a9fe:8000:63bf:3bcd:fefe", AddrMetadata}, // Teredo whose server is the metadata address
		{"::a9fe:a9fe", AddrMetadata},                          // IPv4-compatible
		{"::7f00:1", AddrLoopback},                             // IPv4-compatible loopback
		{"2002:a83f:8110::", AddrMetadata},                     // 6to4 of Azure WireServer
		{"64:ff9b::a83f:8110", AddrMetadata},                   // NAT64 of Azure WireServer

		// Private kinds.
		{"10.0.0.1", AddrPrivate},
		{"10.255.255.255", AddrPrivate},
		{"172.16.0.1", AddrPrivate},
		{"172.31.255.255", AddrPrivate},
		{"192.168.0.1", AddrPrivate},
		{"198.18.0.1", AddrPrivate},
		{"198.19.255.255", AddrPrivate},
		{"::ffff:10.1.2.3", AddrPrivate},
		{"64:ff9b::a01:203", AddrPrivate},
		{"64:ff9b:1::a01:203", AddrPrivate},
		{"2002:c0a8:0101::1", AddrPrivate},
		{"fec0::1", AddrPrivate},
		{"100.64.0.1", AddrCGNAT},
		{"100.127.255.255", AddrCGNAT},
		{"64:ff9b::6440:1", AddrCGNAT},
		{"169.254.1.1", AddrLinkLocal},
		{"fe80::1", AddrLinkLocal},
		{"fe80::1%eth0", AddrLinkLocal},
		{"febf::1", AddrLinkLocal},
		{"fc00::1", AddrULA},
		{"fd12:3456::1", AddrULA},

		// Always blocked.
		{"127.0.0.1", AddrLoopback},
		{"127.255.255.254", AddrLoopback},
		{"::1", AddrLoopback},
		{"::ffff:127.0.0.1", AddrLoopback},
		{"64:ff9b::7f00:1", AddrLoopback},
		{"0.0.0.0", AddrUnspecified},
		{"::", AddrUnspecified},
		{"::ffff:0.0.0.0", AddrUnspecified},
		{"0.1.2.3", AddrReserved},
		{"240.0.0.1", AddrReserved},
		{"::1.2.3.4", AddrReserved},
		{"100::1", AddrReserved},
		{"224.0.0.1", AddrMulticast},
		{"239.255.255.250", AddrMulticast},
		{"ff02::1", AddrMulticast},
		{"255.255.255.255", AddrBroadcast},

		// Public, including the documentation ranges the test world uses.
		{"198.51.100.1", AddrPublic},
		{"198.51.100.7", AddrPublic},
		{"192.0.2.1", AddrPublic},
		{"203.0.113.9", AddrPublic},
		{"2001:db8::1", AddrPublic},
		{"::ffff:198.51.100.1", AddrPublic},
		{"64:ff9b::c633:6401", AddrPublic},
		{"::ffff:0:c633:6401", AddrPublic},                   // SIIT of 198.51.100.1
		{"2001:0:4136:e378:8000:63bf:39cc:9bfe", AddrPublic}, // Teredo, client 198.51.100.1 inverted
		{"2002:c633:6401::1", AddrPublic},                    // 6to4 of 198.51.100.1
		{"8.8.8.8", AddrPublic},
		{"172.32.0.1", AddrPublic},
		{"100.128.0.1", AddrPublic},
		{"2606:4700::1111", AddrPublic},
		{"fe00::1", AddrPublic},
	}
	for _, tt := range tests {
		got := ClassifyAddr(netip.MustParseAddr(tt.ip))
		if got != tt.want {
			t.Errorf("ClassifyAddr(%s) = %s, want %s", tt.ip, got, tt.want)
		}
	}
	if got := ClassifyAddr(netip.Addr{}); got != AddrInvalid || !got.AlwaysBlocked() {
		t.Errorf("ClassifyAddr(zero) = %s, want invalid and blocked", got)
	}
}

func TestAddrKindProperties(t *testing.T) {
	for k := AddrInvalid; k <= AddrReserved; k++ {
		if k.String() == "unknown" {
			t.Errorf("kind %d has no name", k)
		}
		if k.IsPrivate() && k.AlwaysBlocked() {
			t.Errorf("%s is both private and always blocked", k)
		}
	}
	if AddrPublic.IsPrivate() || AddrPublic.AlwaysBlocked() {
		t.Error("public must be neither private nor blocked")
	}
}
