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

// dnsPort is the port an upstream listens on when its address names none.
const dnsPort = 53

// maxResolvConfSize bounds how much of resolv.conf is read: real files are
// a few hundred bytes, and a huge or endless file (a FIFO, /dev/zero) must
// not stall startup.
const maxResolvConfSize = 64 << 10

// ParseUpstreams parses a comma-separated list of upstream servers, each
// "ip" or "ip:port" ("[v6]:port" for IPv6), as FORGE_SUPERVISOR_DNS_UPSTREAM
// carries it, into "ip:port" strings. Names are refused: resolving the
// resolver would need a resolver.
func ParseUpstreams(list string) ([]string, error) {
	var out []string
	for field := range strings.SplitSeq(list, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		ap, err := parseUpstream(field)
		if err != nil {
			return nil, err
		}
		out = append(out, ap.String())
	}
	if len(out) == 0 {
		return nil, errors.New("dns: upstream list is empty")
	}
	return out, nil
}

func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("dns: upstream %q: port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns: upstream %q: want ip or ip:port", s)
	}
	return netip.AddrPortFrom(ip.Unmap(), dnsPort), nil
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
		out = append(out, netip.AddrPortFrom(ip.Unmap(), dnsPort).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dns: %s lists no nameserver", path)
	}
	return out, nil
}
