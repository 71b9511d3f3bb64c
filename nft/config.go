// Package nft installs the kernel half of the egress allowlist: one nftables
// table, written over netlink in a single atomic batch, that sends every TCP
// connection of the agent to the transparent proxy, every DNS query of the
// agent to the DNS proxy, and rejects the rest of the agent's traffic.
//
// The table touches nothing outside itself. Other tables in the same network
// namespace (Docker's, Kubernetes', a distribution firewall) are neither read
// nor changed, so they keep working byte for byte.
//
// The agent is recognised by socket owner (meta skuid / meta skgid), not by
// address: packets without a socket (neighbour discovery, ICMP errors the
// kernel sends, forwarded traffic) and sockets of other users pass untouched.
// The supervisor's own sockets carry Config.Mark (SO_MARK) and are exempt
// before any owner match, so the supervisor never proxies itself even if it
// ran under the agent's UID.
package nft

import (
	"fmt"
	"strings"
)

// DefaultTable is the name of the table in family inet.
const DefaultTable = "forge_supervisor"

// DefaultMark is the packet mark (SO_MARK) the supervisor puts on its own
// sockets: the ASCII bytes "FRGE". Setting SO_MARK needs CAP_NET_ADMIN, so
// the jailed agent can never forge it. It is a full 32-bit value rather than
// a single bit so it cannot collide with the small bit masks Kubernetes
// (0x4000, 0x8000) and Docker's and Cilium's datapaths use.
const DefaultMark uint32 = 0x46524745

// DefaultLogGroup is the NFLOG group the rules log to and the supervisor
// reads: the ASCII bytes "FG". One reader may bind a group per network
// namespace; another program using this group would make ProbeLog fail.
const DefaultLogGroup uint16 = 0x4647

// maxTableName is the kernel's limit on an nftables table name including the
// terminating NUL (NFT_TABLE_MAXNAMELEN).
const maxTableName = 256

// Config says which traffic is the agent's and where it goes.
type Config struct {
	// Table is the name of the inet table; "" means DefaultTable.
	Table string
	// AgentUID and AgentGID identify the agent's sockets. Zero is refused:
	// it would capture root's traffic, the supervisor's included.
	AgentUID uint32
	AgentGID uint32
	// ProxyPort is the transparent TCP proxy's port on loopback.
	ProxyPort uint16
	// DNSPort is the DNS proxy's port on loopback (UDP and TCP).
	DNSPort uint16
	// Mark is carried by the supervisor's own sockets (SO_MARK); marked
	// packets are exempt from every rule. Zero is refused: every unmarked
	// packet has mark 0, so it would exempt everything.
	Mark uint32
	// FastPath, when set, adds the kernel verdict path's sets and rules
	// (fastpath.go); nil keeps every agent TCP connection on the proxy.
	FastPath *FastPath
	// HealthPort is the health server's port; with ProxyPort and DNSPort
	// it is reached directly (not through the proxy) on local addresses.
	// 0: none.
	HealthPort uint16
	// LocalPorts are the allowed_local_ports: UDP ports on local addresses
	// the agent may reach besides the DNS proxy. (The agent's TCP to local
	// addresses goes to the proxy, which applies the same list.)
	LocalPorts []uint16
	// InboundPorts are the TCP ports on which peers outside the pod may
	// connect to the agent's listeners; connections to any other port are
	// dropped and counted (CounterInboundDropped).
	InboundPorts []uint16
	// AllowMulticast keeps IGMP/MLD reports; by default they are dropped
	// (see rules_multicast.go).
	AllowMulticast bool
	// LogGroup is the NFLOG group the drop and reject rules log to; 0
	// means no logging (see ProbeLog).
	LogGroup uint16
	// NetNS is an optional file descriptor of the network namespace to
	// program; 0 means the calling thread's namespace.
	NetNS int
}

// validated returns cfg with defaults applied, or an error saying which
// field is unusable. An invalid config never reaches the kernel.
func (cfg Config) validated() (Config, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	var problems []string
	if len(cfg.Table)+1 > maxTableName {
		problems = append(problems, fmt.Sprintf("table name is %d bytes, the kernel allows %d", len(cfg.Table), maxTableName-1))
	}
	if strings.IndexByte(cfg.Table, 0) >= 0 {
		problems = append(problems, "table name contains a NUL byte")
	}
	if cfg.AgentUID == 0 {
		problems = append(problems, "agent uid is 0 (root): the rules would capture the supervisor's own traffic")
	}
	if cfg.AgentGID == 0 {
		problems = append(problems, "agent gid is 0 (root): the rules would capture the supervisor's own traffic")
	}
	if cfg.ProxyPort == 0 {
		problems = append(problems, "proxy port is 0")
	}
	if cfg.DNSPort == 0 {
		problems = append(problems, "dns port is 0")
	}
	if cfg.ProxyPort != 0 && cfg.ProxyPort == cfg.DNSPort {
		problems = append(problems, fmt.Sprintf("proxy port and dns port are both %d", cfg.ProxyPort))
	}
	if cfg.Mark == 0 {
		problems = append(problems, "mark is 0: every unmarked packet would be exempt")
	}
	for _, p := range append(append([]uint16(nil), cfg.LocalPorts...), cfg.InboundPorts...) {
		if p == 0 {
			problems = append(problems, "port 0 in local or inbound ports")
			break
		}
	}
	if cfg.NetNS < 0 {
		problems = append(problems, fmt.Sprintf("netns fd %d is negative", cfg.NetNS))
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("nft: invalid config: %s", strings.Join(problems, "; "))
	}
	return cfg, nil
}
