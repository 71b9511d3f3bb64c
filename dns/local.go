package dns

import (
	"net"

	"github.com/forge/forge-supervisor/localaddr"
)

// The DNS proxy answers only local sources (localaddr.Set: loopback, or an
// address of the pod's interfaces). A query whose source is not local was
// sent with a spoofed source (the agent can bind to any IPv6 address with
// IPV6_FREEBIND, unprivileged), or came from outside; answering it would
// reflect data to that address.

// localListener accepts only connections from local addresses; others are
// closed at once, before a byte is read (counted by drop).
type localListener struct {
	net.Listener
	local *localaddr.Set
	drop  func(net.Addr)
}

func (l *localListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.local.Contains(clientAddr(c.RemoteAddr()).Addr()) {
			return c, nil
		}
		l.drop(c.RemoteAddr())
		c.Close()
	}
}
