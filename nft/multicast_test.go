package nft

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wireCounters counts, on the world's side of the link, IGMP and the MLD
// reports that are not for a solicited-node group: what a multicast join
// in the pod makes the kernel send.
const wireCounters = `
table netdev mcast_wire {
	counter igmp_seen {}
	counter mld_seen {}
	chain ingress {
		type filter hook ingress device "eth0" priority -500; policy accept;
		meta l4proto igmp counter name "igmp_seen"
		icmpv6 type mld2-listener-report @th,96,104 != 0xff0200000000000000000001ff counter name "mld_seen"
	}
}
`

// joinGroups joins 232.1.2.3 (source-specific, from 198.51.100.3) and ff05::e5c:1
// on eth0 as root in the agent namespace: no seccomp in the way, so only
// the nft rules stand between the reports and the world.
func joinGroups(t *testing.T, w *world) {
	t.Helper()
	if err := w.pair.Agent.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd4)
		mreq := unix.IPMreqn{Multiaddr: [4]byte{232, 1, 2, 3}, Ifindex: int32(ifi.Index)}
		if err := unix.SetsockoptIPMreqn(fd4, unix.SOL_IP, unix.IP_ADD_MEMBERSHIP, &mreq); err != nil {
			return err
		}
		fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd6)
		m6 := unix.IPv6Mreq{Multiaddr: netip.MustParseAddr("ff05::e5c:1").As16(), Interface: uint32(ifi.Index)}
		if err := unix.SetsockoptIPv6Mreq(fd6, unix.SOL_IPV6, unix.IPV6_JOIN_GROUP, &m6); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond) // the unsolicited reports leave at once
		return nil
	}); err != nil {
		t.Fatalf("join: %v", err)
	}
}

func counters(t *testing.T, w *world) string {
	t.Helper()
	out, err := w.pair.World.Cmd("nft", "list", "table", "netdev", "mcast_wire").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v\n%s", err, out)
	}
	return string(out)
}

func TestMulticastReportsDropped(t *testing.T) {
	for _, allow := range []bool{false, true} {
		w := newWorldWith(t, func(c *Config) { c.AllowMulticast = allow })
		cmd := w.pair.World.Cmd("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(wireCounters)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v\n%s", err, out)
		}
		joinGroups(t, w)
		got := counters(t, w)
		silent := strings.Count(got, "packets 0 bytes 0") == 2
		if !allow && !silent {
			t.Errorf("group reports left the pod with multicast off:\n%s", got)
		}
		if allow && silent {
			t.Errorf("no group report left the pod with AllowMulticast (the probe sees nothing):\n%s", got)
		}
	}
	// Neighbour discovery still works with multicast off: TestBehaviour's
	// "IPv6 neighbour discovery still works".
}
