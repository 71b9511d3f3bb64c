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
	// ChainFilterEarly is a filter base chain on the output hook that runs
	// before NAT, so what it logs shows the destination the agent asked for.
	ChainFilterEarly = "filter_early"
	// ChainAgentEarly drops the agent's spoofed sources.
	ChainAgentEarly = "agent_early"
	// ChainFilterPost is the filter base chain on the postrouting hook.
	ChainFilterPost = "filter_postrouting"
	// ChainAgentPost checks where agent packets really leave.
	ChainAgentPost = "agent_postrouting"
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

// earlyPriority runs before our nat chain (-110) and after conntrack
// (-200): a spoofed packet is dropped before any redirect, and its log line
// carries the original destination.
const earlyPriority nftables.ChainPriority = -150

// chainRules is one chain with the rules Install adds to it, in order.
type chainRules struct {
	chain nftables.Chain // Table is left nil; Install fills it in
	rules [][]expr.Any
}

// ruleset is the whole table's contents. With the default config,
// `nft list table inet forge_supervisor` prints testdata/ruleset.golden:
//
//	filter_early (filter, output, -150): mark accept; skuid/skgid → agent_early
//	agent_early:
//		fib saddr type != local log drop           spoofed sources, before NAT
//	nat_output (nat, output, -110): mark return; skuid/skgid → agent_nat
//	agent_nat:
//		udp/tcp dport 53 redirect to :DNS          every DNS query, any server
//		local tcp dport @supervisor_ports accept   health and DNS ports
//		tcp redirect to :PROXY                     all other TCP, loopback too
//	filter_output (filter, output, 0): mark accept; skuid/skgid → agent_filter;
//		IGMP/MLD reports dropped (but solicited-node MLD) unless AllowMulticast
//	agent_filter:
//		tcp to local: redirected (ct status dnat), @supervisor_ports, the proxy port, or a reply: accept
//		udp to local dport @local_udp_ports accept DNS port, allowed_local_ports
//		udp reply to local accept; icmp to local accept
//		tcp reply sport @inbound_ports accept; other tcp reply: count, drop
//		tcp log reset; local log reject; udp, icmp, other log reject
//	filter_postrouting (filter, postrouting, 0): mark accept; skuid/skgid → agent_postrouting
//	agent_postrouting:
//		oif lo accept; daddr 127.0.0.0/8, ::1 log drop
//
// The chains are returned for a validated config, in the order `nft list`
// shows it: each base chain followed by the agent chain it jumps to.
// Install adds every set and chain before any rule, so lookups and jump
// targets exist when a rule names them.
func ruleset(cfg Config) []chainRules {
	accept := nftables.ChainPolicyAccept
	lg := cfg.LogGroup
	filterOutput := [][]expr.Any{
		markAccepts(cfg.Mark),
		skuidJumps(cfg.AgentUID, ChainAgentFilter),
		skgidJumps(cfg.AgentGID, ChainAgentFilter),
	}
	if !cfg.AllowMulticast {
		filterOutput = append(filterOutput, multicastRules(lg)...)
	}
	return withFastPath(cfg, []chainRules{
		{
			chain: nftables.Chain{
				Name:     ChainFilterEarly,
				Type:     nftables.ChainTypeFilter,
				Hooknum:  nftables.ChainHookOutput,
				Priority: nftables.ChainPriorityRef(earlyPriority),
				Policy:   &accept,
			},
			rules: [][]expr.Any{
				markAccepts(cfg.Mark),
				skuidJumps(cfg.AgentUID, ChainAgentEarly),
				skgidJumps(cfg.AgentGID, ChainAgentEarly),
			},
		},
		{
			chain: nftables.Chain{Name: ChainAgentEarly},
			rules: [][]expr.Any{spoofedSourceDrops(lg)},
		},
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
				supervisorPortsAccept(),
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
			rules: filterOutput,
		},
		{
			chain: nftables.Chain{Name: ChainAgentFilter},
			rules: [][]expr.Any{
				localTCPRedirectedAccepts(),
				supervisorPortsFilterAccepts(),
				proxyPortAccepts(cfg.ProxyPort),
				localTCPRepliesAccept(),
				localUDPPortsAccept(),
				localUDPRepliesAccept(),
				localICMPAccepts(unix.IPPROTO_ICMP),
				localICMPAccepts(unix.IPPROTO_ICMPV6),
				inboundAccepts(),
				inboundDrops(),
				tcpResets(lg),
				localRejects(lg),
				l4protoRejects(unix.IPPROTO_UDP, lg, ReasonUDPNotAllowed),
				l4protoRejects(unix.IPPROTO_ICMP, lg, ReasonICMPNotAllowed),
				l4protoRejects(unix.IPPROTO_ICMPV6, lg, ReasonICMPNotAllowed),
				everythingRejects(lg),
			},
		},
		{
			chain: nftables.Chain{
				Name:     ChainFilterPost,
				Type:     nftables.ChainTypeFilter,
				Hooknum:  nftables.ChainHookPostrouting,
				Priority: nftables.ChainPriorityRef(filterPriority),
				Policy:   &accept,
			},
			rules: [][]expr.Any{
				markAccepts(cfg.Mark),
				skuidJumps(cfg.AgentUID, ChainAgentPost),
				skgidJumps(cfg.AgentGID, ChainAgentPost),
			},
		},
		{
			chain: nftables.Chain{Name: ChainAgentPost},
			rules: [][]expr.Any{
				outputIsLoopbackAccepts(),
				loopbackLeavesDrops(false, lg),
				loopbackLeavesDrops(true, lg),
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
