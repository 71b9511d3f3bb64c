package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chain names inside the table.
const (
	// ChainNATOutput is the nat base chain on the output hook.
	ChainNATOutput = "nat_output"
	// ChainAgentNAT holds the redirects, reached only by agent packets.
	ChainAgentNAT = "agent_nat"
	// ChainFilterOutput is the filter base chain on the output hook.
	ChainFilterOutput = "filter_output"
	// ChainAgentFilter holds the accepts and rejects for agent packets.
	ChainAgentFilter = "agent_filter"
)

// natPriority orders our nat chain before every other NAT on the output
// hook. iptables-nft (Docker's embedded-DNS DNAT to 127.0.0.11, Kubernetes'
// service DNAT) sits at NF_IP_PRI_NAT_DST = -100. The kernel runs the nat
// chains of a hook in priority order only until one of them binds a
// mapping for the new connection; at -110 our redirect is that first
// binding, so an agent's query to 127.0.0.11 reaches our DNS proxy instead
// of Docker's resolver. Connections we do not redirect (supervisor, other
// users, agent loopback) get no binding from us and still reach the later
// chains. -110 stays above conntrack (-200), which NAT needs to have run.
const natPriority nftables.ChainPriority = -110

// filterPriority is the standard filter priority: after every nat chain,
// so the rules see destination addresses after redirection (127.0.0.1 or
// ::1). The output device (meta oif) stays the one routed before NAT.
const filterPriority nftables.ChainPriority = 0

// chainRules is one chain with the rules Install adds to it, in order.
type chainRules struct {
	chain nftables.Chain // Table is left nil; Install fills it in
	rules [][]expr.Any
}

// ruleset is the whole table's contents. With the default config,
// `nft list table inet forge_supervisor` prints (testdata/ruleset.golden):
//
//	chain nat_output {
//		type nat hook output priority -110; policy accept;
//		meta mark 0x46524745 return
//		meta skuid 1000 jump agent_nat
//		meta skgid 1000 jump agent_nat
//	}
//	chain agent_nat {
//		udp dport 53 redirect to :15002
//		tcp dport 53 redirect to :15002
//		ip daddr 127.0.0.0/8 accept
//		ip6 daddr ::1 accept
//		meta l4proto tcp redirect to :15001
//	}
//	chain filter_output {
//		type filter hook output priority filter; policy accept;
//		meta mark 0x46524745 accept
//		meta skuid 1000 jump agent_filter
//		meta skgid 1000 jump agent_filter
//	}
//	chain agent_filter {
//		oif "lo" accept
//		ip daddr 127.0.0.0/8 accept
//		ip6 daddr ::1 accept
//		meta l4proto tcp ct direction reply accept
//		meta l4proto tcp reject with tcp reset
//		meta l4proto udp reject with icmpx admin-prohibited
//		meta l4proto icmp reject with icmpx admin-prohibited
//		meta l4proto ipv6-icmp reject with icmpx admin-prohibited
//		reject with icmpx admin-prohibited
//	}
//
// The chains are returned for a validated config, in the
// order `nft list` shows it: each base chain followed by the agent chain it
// jumps to. Install adds every chain before any rule, so jump targets exist
// when a rule names them.
func ruleset(cfg Config) []chainRules {
	accept := nftables.ChainPolicyAccept
	return withFastPath(cfg, []chainRules{
		{
			chain: nftables.Chain{
				Name:     ChainNATOutput,
				Type:     nftables.ChainTypeNAT,
				Hooknum:  nftables.ChainHookOutput,
				Priority: nftables.ChainPriorityRef(natPriority),
				Policy:   &accept,
			},
			rules: [][]expr.Any{
				markReturns(cfg.Mark),
				skuidJumps(cfg.AgentUID, ChainAgentNAT),
				skgidJumps(cfg.AgentGID, ChainAgentNAT),
			},
		},
		{
			chain: nftables.Chain{Name: ChainAgentNAT},
			rules: [][]expr.Any{
				dnsRedirects(unix.IPPROTO_UDP, cfg.DNSPort),
				dnsRedirects(unix.IPPROTO_TCP, cfg.DNSPort),
				loopbackV4Accepts(),
				loopbackV6Accepts(),
				tcpRedirects(cfg.ProxyPort),
			},
		},
		{
			chain: nftables.Chain{
				Name:     ChainFilterOutput,
				Type:     nftables.ChainTypeFilter,
				Hooknum:  nftables.ChainHookOutput,
				Priority: nftables.ChainPriorityRef(filterPriority),
				Policy:   &accept,
			},
			rules: [][]expr.Any{
				markAccepts(cfg.Mark),
				skuidJumps(cfg.AgentUID, ChainAgentFilter),
				skgidJumps(cfg.AgentGID, ChainAgentFilter),
			},
		},
		{
			chain: nftables.Chain{Name: ChainAgentFilter},
			rules: [][]expr.Any{
				localDestAccepts(),
				// The output hook keeps the pre-NAT route's device for the
				// whole traversal, so redirected packets still show the
				// outer oif here; their rewritten destination is loopback.
				loopbackV4Accepts(),
				loopbackV6Accepts(),
				tcpRepliesAccept(),
				tcpResets(),
				l4protoRejects(unix.IPPROTO_UDP),
				l4protoRejects(unix.IPPROTO_ICMP),
				l4protoRejects(unix.IPPROTO_ICMPV6),
				everythingRejects(),
			},
		},
	})
}

// Rules returns, per chain name, the expression lists Install adds for
// cfg, in order. It is for tests and golden comparisons; the result is a
// fresh copy the caller may keep.
func Rules(cfg Config) (map[string][][]expr.Any, error) {
	cfg, err := cfg.validated()
	if err != nil {
		return nil, err
	}
	out := make(map[string][][]expr.Any)
	for _, c := range ruleset(cfg) {
		out[c.chain.Name] = c.rules
	}
	return out, nil
}
