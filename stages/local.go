package stages

import (
	"net/netip"
	"slices"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/localaddr"
	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/sockdiag"
)

// LocalPolicy decides the agent's TCP connections to this host's own
// addresses (loopback and the pod's addresses), which nft redirects to the
// proxy like any other: loopback is policy, not an exemption. In a
// Kubernetes pod every container shares the network namespace, so a
// listener on 127.0.0.1 may be a sidecar that relays anywhere.
type LocalPolicy struct {
	// AgentUID owns the listeners the agent may always reach (its own dev
	// servers, a local MCP server it started).
	AgentUID uint32
	// AllowedPorts are the allowed_local_ports: reachable whoever listens.
	AllowedPorts []uint16
	// Addrs are this namespace's addresses; nil: localaddr.New().
	Addrs *localaddr.Set
	// Listener finds the socket a connection would reach; nil: a
	// sockdiag.Client's Listener.
	Listener func(netip.AddrPort) (sockdiag.Socket, error)
}

// withDefaults returns a copy of l with its defaults filled in (nil stays
// nil: no local decisions, and the policy denies loopback as before).
func (l *LocalPolicy) withDefaults() *LocalPolicy {
	if l == nil {
		return nil
	}
	c := *l
	if c.Addrs == nil {
		c.Addrs = localaddr.New()
	}
	if c.Listener == nil {
		c.Listener = listenerLookup()
	}
	return &c
}

// listenerLookup is sockdiag's listener lookup, or — when sock_diag cannot
// be opened — a lookup that always fails, so every local destination not in
// AllowedPorts is denied (fail closed).
func listenerLookup() func(netip.AddrPort) (sockdiag.Socket, error) {
	c, err := sockdiag.New()
	if err != nil {
		return func(netip.AddrPort) (sockdiag.Socket, error) { return sockdiag.Socket{}, err }
	}
	return c.Listener
}

// decide returns whether the agent may reach dst, a local address, and why.
func (l *LocalPolicy) decide(dst netip.AddrPort) (bool, string) {
	if slices.Contains(l.AllowedPorts, dst.Port()) {
		return true, ReasonAllowedLocalPort
	}
	s, err := l.Listener(dst)
	if err != nil || s.UID != l.AgentUID {
		// No listener, a lookup error, or someone else's: deny (fail
		// closed).
		return false, ReasonLocalPort
	}
	return true, ReasonLocalAgentListener
}

// foreignSource reports whether the client's address is not this pod's.
func (e *Engine) foreignSource(c *conn.Conn) bool {
	return e.cfg.Local != nil && c.Src.IsValid() && !e.cfg.Local.Addrs.Contains(c.Src.Addr())
}

// isLocalDst reports whether the original destination is on this host.
func (e *Engine) isLocalDst(c *conn.Conn) bool {
	return e.cfg.Local != nil && e.cfg.Local.Addrs.Contains(c.Dst.Addr())
}

// decideLocal is the policy stage for a local destination, run in the
// classify stage's origdst step: the decision needs no name, so
// classification and the policy are skipped (a server-speaks-first local
// protocol is not kept waiting), and the connection goes straight to the
// dial, marked Local.
func (e *Engine) decideLocal(c *conn.Conn) route {
	c.Local, c.Proto = true, conn.ProtoOpaque
	c.Stamps.Classify, c.Stamps.Policy = c.Stamps.OrigDst, c.Stamps.OrigDst
	allow, reason := e.cfg.Local.decide(c.Dst)
	return e.allow(c, policy.Verdict{Allow: allow, Reason: reason})
}
