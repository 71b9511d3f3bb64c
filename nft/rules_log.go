package nft

import (
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Reasons carried as the NFLOG prefix of each logging rule: the reader
// (nflog.go) turns a logged packet into an egress_denied audit line with
// this reason. They are part of the audit vocabulary (docs/audit-events.md).
const (
	ReasonSpoofedSource   = "spoofed_source"         // the source is not an address of the pod
	ReasonLoopbackLeaves  = "loopback_leaves_pod"    // a loopback destination routed out of a real interface
	ReasonLocalPort       = "local_port_not_allowed" // UDP/other to a local port that is not declared
	ReasonUDPNotAllowed   = "udp_not_allowed"        // UDP to anywhere but DNS (QUIC, …)
	ReasonICMPNotAllowed  = "icmp_not_allowed"       // ICMP/ICMPv6 beyond this host
	ReasonProtoNotAllowed = "proto_not_allowed"      // any other L4 protocol (SCTP, UDP-Lite, …)
	ReasonRedirectMissed  = "redirect_missed"        // agent TCP that escaped the redirect
	ReasonMulticastReport = "multicast_report"       // an IGMP/MLD report the kernel would send
)

// logSnaplen is how much of a logged packet the kernel copies to the
// reader: the IPv6 header, a hop-by-hop header and the transport header's
// ports fit with room to spare; payload is never needed.
const logSnaplen = 128

// withLog builds `MATCH [log prefix "REASON" group G snaplen 128] VERDICT`.
// With group 0 (NFLOG unavailable, see ProbeLog) the rule has no log
// statement and still drops or rejects: logging never decides.
func withLog(match []expr.Any, group uint16, reason string, verdict expr.Any) []expr.Any {
	out := append([]expr.Any(nil), match...)
	if group != 0 {
		// [ log prefix REASON group G snaplen 128 ]
		out = append(out, &expr.Log{
			Key:     1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_SNAPLEN,
			Group:   group,
			Snaplen: logSnaplen,
			Data:    []byte(reason),
		})
	}
	return append(out, verdict)
}
