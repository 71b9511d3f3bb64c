package dns

import "github.com/miekg/dns"

// Extended DNS Errors (RFC 8914) on the answers the proxy makes itself, so
// that resolvers and people can tell a policy denial from an outage: a bare
// REFUSED surfaces as EAI_AGAIN ("temporary failure") and clients retry.
// An EDE is an EDNS option, so only queries that carried an OPT record get
// one (RFC 6891 forbids an OPT in the answer to a query without).

// denyReply is the answer to a query the policy denied: rcode with EDE
// Blocked ("blocked by the operator's policy") and the reason as text.
func denyReply(req *dns.Msg, rcode int, reason string) *dns.Msg {
	return withEDE(errorReply(req, rcode), dns.ExtendedErrorCodeBlocked, reason)
}

// withEDE adds an Extended DNS Error to m when it has an OPT record.
func withEDE(m *dns.Msg, code uint16, text string) *dns.Msg {
	if opt := m.IsEdns0(); opt != nil {
		opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
	}
	return m
}
