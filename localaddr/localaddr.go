// Package localaddr answers "is this address one of this network
// namespace's own?" for every packet-sized decision (a DNS query, an
// accepted connection) without a netlink dump each time: the interface
// addresses are cached, and the cache is refreshed when asked about an
// address it does not know — at most once per refresh interval, so a flood
// of foreign sources costs one dump per interval, and an address added
// later is known within that interval.
//
// localaddr imports no other package of this project.
package localaddr

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// refreshInterval bounds how often a miss may re-read the addresses.
const refreshInterval = time.Second

// Set is the namespace's addresses. The zero value is not usable; use New.
// A hit reads an immutable map through an atomic pointer (no lock on the
// DNS proxy's per-query path); only a miss takes the lock.
type Set struct {
	list func() ([]netip.Addr, error)
	now  func() time.Time

	addrs atomic.Pointer[map[netip.Addr]struct{}]

	mu        sync.Mutex // serialises refreshes
	refreshed time.Time
}

// New returns a Set over the calling process's network namespace.
func New() *Set { return newSet(interfaceAddrs, time.Now) }

// NewFrom returns a Set whose addresses come from list and whose clock is
// now (for tests); nil means the namespace's interfaces and time.Now.
func NewFrom(list func() ([]netip.Addr, error), now func() time.Time) *Set {
	if list == nil {
		list = interfaceAddrs
	}
	if now == nil {
		now = time.Now
	}
	return newSet(list, now)
}

func newSet(list func() ([]netip.Addr, error), now func() time.Time) *Set {
	return &Set{list: list, now: now}
}

// Contains reports whether ip is an address of this namespace. Loopback
// addresses (127.0.0.0/8, ::1) always are. An IPv4-mapped IPv6 address is
// looked up as IPv4. When the addresses cannot be read, it says false:
// the callers drop what they cannot attribute.
func (s *Set) Contains(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if ip.IsLoopback() {
		return true
	}
	if m := s.addrs.Load(); m != nil {
		if _, ok := (*m)[ip]; ok {
			return true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.addrs.Load(); m != nil && s.now().Sub(s.refreshed) < refreshInterval {
		_, ok := (*m)[ip] // another caller may have refreshed meanwhile
		return ok
	}
	s.refresh()
	_, ok := (*s.addrs.Load())[ip]
	return ok
}

// refresh re-reads the addresses; s.mu is held.
func (s *Set) refresh() {
	s.refreshed = s.now()
	m := map[netip.Addr]struct{}{}
	if list, err := s.list(); err == nil {
		for _, a := range list {
			m[a.Unmap().WithZone("")] = struct{}{}
		}
	}
	s.addrs.Store(&m)
}

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
