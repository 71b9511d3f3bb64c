package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// StandardPort is DNS's well-known port: where an upstream listens when its
// address names none, and where the agent's queries are redirected from.
const StandardPort = 53

// maxUpstreams: resolv.conf honours 3 nameservers; 8 leaves room for
// IPv4+IPv6 pairs without letting a list grow without bound.
const maxUpstreams = 8

// maxResolvConfSize bounds how much of resolv.conf is read: real files are
// a few hundred bytes, and a huge or endless file (a FIFO, /dev/zero) must
// not stall startup.
const maxResolvConfSize = 64 << 10

// ParseUpstreams parses a comma-separated list of upstream servers, as
// FORGE_SUPERVISOR_DNS_UPSTREAM carries it, into "ip:port" strings. Each is
// "ip" or "ip:port" ("[v6]:port" for IPv6 with a port), unicast, without a
// zone, at most once. Names are refused: resolving the resolver would need
// a resolver. An empty list is none (nil): the caller reads resolv.conf.
// The errors say what a valid value looks like; the caller adds which
// setting carried it.
func ParseUpstreams(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	parts := strings.Split(list, ",")
	if len(parts) > maxUpstreams {
		return nil, fmt.Errorf("at most %d upstreams, got %d", maxUpstreams, len(parts))
	}
	out := make([]string, 0, len(parts))
	seen := make(map[netip.AddrPort]bool, len(parts))
	for _, p := range parts {
		ap, err := parseUpstream(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", p, err)
		}
		if seen[ap] {
			return nil, fmt.Errorf("upstream %q: listed twice", p)
		}
		seen[ap] = true
		out = append(out, ap.String())
	}
	return out, nil
}

func parseUpstream(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if addr, err := netip.ParseAddr(s); err == nil {
		ap = netip.AddrPortFrom(addr, StandardPort) // bare IPv4 or IPv6
	} else if ap, err = netip.ParseAddrPort(s); err != nil {
		return netip.AddrPort{}, errors.New("must be an IP address with an optional port: 192.0.2.53, 192.0.2.53:5353, 2001:db8::53 or [2001:db8::53]:5353")
	}
	addr := ap.Addr()
	switch {
	case ap.Port() == 0:
		return netip.AddrPort{}, errors.New("port must be 1..65535")
	case addr.Zone() != "":
		return netip.AddrPort{}, errors.New("IPv6 zones are not supported")
	case addr.IsUnspecified(), addr.IsMulticast():
		return netip.AddrPort{}, errors.New("must be a unicast address")
	}
	return netip.AddrPortFrom(addr.Unmap(), ap.Port()), nil
}

// UpstreamsFromResolvConf returns the nameservers of a resolv.conf file as
// "ip:port" strings, in file order. Lines that are not valid nameserver
// entries are skipped, as the C library does; a file with none is an error.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, maxResolvConfSize))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip.Unmap(), StandardPort).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dns: %s lists no nameserver", path)
	}
	return out, nil
}
