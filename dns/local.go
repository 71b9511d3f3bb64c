package dns

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// localRefreshEvery bounds how often a query from an address not in the
// snapshot makes the proxy re-read the host's addresses: often enough that
// an address added while running is seen within a second, rarely enough
// that a flood of spoofed sources costs one netlink dump per second.
const localRefreshEvery = time.Second

// localAddrs tells whether an address is one of this host's (the pod's):
// loopback, or assigned to an interface. The DNS proxy answers only those.
// A query whose source is not local was sent with a spoofed source (the
// agent can bind to any IPv6 address with IPV6_FREEBIND, unprivileged), or
// came from outside; answering it would reflect data to that address.
type localAddrs struct {
	now  func() time.Time
	list func() ([]netip.Addr, error)

	mu        sync.RWMutex
	set       map[netip.Addr]struct{}
	refreshed time.Time
}

func newLocalAddrs(now func() time.Time, list func() ([]netip.Addr, error)) *localAddrs {
	if list == nil {
		list = interfaceAddrs
	}
	return &localAddrs{now: now, list: list}
}

// has reports whether ip is local. Loopback addresses always are; others
// are looked up in a snapshot of the interfaces' addresses, re-read (at
// most once per localRefreshEvery) when ip is not in it. A failure to read
// the addresses leaves only loopback local: fail closed.
func (l *localAddrs) has(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() {
		return true
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		return false
	}
	l.mu.RLock()
	_, ok := l.set[ip]
	fresh := l.now().Sub(l.refreshed) < localRefreshEvery
	l.mu.RUnlock()
	if ok || fresh {
		return ok
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.now(); now.Sub(l.refreshed) >= localRefreshEvery {
		l.refreshed = now
		addrs, err := l.list()
		set := make(map[netip.Addr]struct{}, len(addrs))
		if err == nil {
			for _, a := range addrs {
				set[a.Unmap().WithZone("")] = struct{}{}
			}
		}
		l.set = set
	}
	_, ok = l.set[ip]
	return ok
}

// interfaceAddrs lists the addresses assigned to the host's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

// localListener accepts only connections from local addresses; others are
// closed at once, before a byte is read (counted by drop).
type localListener struct {
	net.Listener
	local *localAddrs
	drop  func(net.Addr)
}

func (l *localListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.local.has(clientAddr(c.RemoteAddr()).Addr()) {
			return c, nil
		}
		l.drop(c.RemoteAddr())
		c.Close()
	}
}
