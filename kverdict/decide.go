package kverdict

import (
	"context"
	"errors"
	"net/netip"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// Deny reasons of the kernel path. Those shared with the proxy carry the
// proxy's words (stages/origdst.go; a test keeps them equal), so a flow is
// explained the same way whichever path judged it.
const (
	ReasonMalformedTLS   = "malformed_client_hello"
	ReasonMalformedHTTP  = "malformed_http"
	ReasonHeaderTooLarge = "header_too_large"
	ReasonClassifyTimout = "classify_timeout"
	ReasonClientClosed   = "client_closed"
	ReasonClassifyError  = "classify_error"

	// ReasonWindowFull: the client used its initial window on a
	// ClientHello that is still incomplete; nothing more can arrive while
	// its segments are held.
	ReasonWindowFull = "clienthello_exceeds_window"
	// ReasonHTTPNeedsProxy: cleartext HTTP/1.x to a fast-path destination.
	// The proxy checks every request of a kept-alive connection, which the
	// kernel path cannot; the first request is refused rather than
	// waved through unchecked.
	ReasonHTTPNeedsProxy = "http_needs_proxy"
	// ReasonNotTCP: a queued packet that does not parse as TCP over IP.
	ReasonNotTCP = "unparseable_packet"
	// ReasonOverloaded: the flow table is full; new flows are denied.
	ReasonOverloaded = "kernel_path_overloaded"
	// ReasonShutdown: the supervisor stopped while the flow was held.
	ReasonShutdown = "shutdown"
)

// SourceKernel is the audit `source` of flows the kernel path judged.
const SourceKernel = "kernel"

// judgement is a flow's classification and verdict.
type judgement struct {
	sniffed conn.Sniffed
	verdict policy.Verdict
}

// judge turns the sniffed first bytes into a verdict, with the same policy
// call the proxy's decide stage makes. resolver may be the cache-only one;
// its sni_ip_mismatch is then re-asked with a full lookup (see async.go).
func judge(ctx context.Context, p *policy.Policy, s conn.Sniffed, sniffErr error, dst netip.AddrPort, r policy.Resolver) judgement {
	j := judgement{sniffed: s}
	switch {
	case sniffErr != nil:
		j.verdict = policy.Verdict{Reason: classifyReason(sniffErr)}
	case s.Proto == conn.ProtoHTTP:
		j.verdict = policy.Verdict{Reason: ReasonHTTPNeedsProxy}
	default:
		j.verdict = p.Decide(ctx, policy.Request{Name: s.SNI, IP: dst.Addr(), Port: dst.Port()}, r)
	}
	return j
}

// classifyReason maps a sniffing error as the proxy's classify stage does.
func classifyReason(err error) string {
	switch {
	case errors.Is(err, conn.ErrMalformedClientHello):
		return ReasonMalformedTLS
	case errors.Is(err, conn.ErrHeaderTooLarge):
		return ReasonHeaderTooLarge
	case errors.Is(err, conn.ErrMalformedHTTP):
		return ReasonMalformedHTTP
	case errors.Is(err, conn.ErrClassifyTimeout):
		return ReasonClassifyTimout
	case errors.Is(err, conn.ErrClientClosed):
		return ReasonClientClosed
	default:
		return ReasonClassifyError
	}
}

// Names is what the kernel path asks of the DNS proxy's learned cache.
type Names interface {
	policy.Resolver
	// Knows reports whether the normalized name is known to resolve to ip,
	// from the cache alone: it never waits for a lookup.
	Knows(name string, ip netip.Addr) bool
}

// cacheOnly is a Resolver that answers from the cache and never blocks:
// the worker's loop must not wait on DNS.
type cacheOnly struct{ n Names }

func (c cacheOnly) Resolves(_ context.Context, name string, ip netip.Addr) bool {
	return c.n.Knows(name, ip.Unmap())
}

func (c cacheOnly) NamesFor(ip netip.Addr) []string { return c.n.NamesFor(ip) }
