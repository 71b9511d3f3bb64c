package deploy

import "strings"

// Capability is one Linux capability the supervisor's container keeps, in
// Kubernetes' spelling (no CAP_ prefix), with the code that needs it.
type Capability struct {
	Name string
	Why  string
}

// privilegedPortLimit: binding a port below it needs NET_BIND_SERVICE
// (net.ipv4.ip_unprivileged_port_start defaults to 1024 and Kubernetes does
// not lower it).
const privilegedPortLimit = 1024

// Capabilities returns the exact set the supervisor needs, in a fixed order;
// everything else is dropped. Each entry was derived from the code that
// makes the privileged call:
//
//   - NET_ADMIN: nft.Install/Remove program nf_tables over netlink, which
//     the kernel allows only with CAP_NET_ADMIN (nft.Probe checks for it
//     and otherwise falls back to the explicit proxy); stages/dial.go and
//     dns/mark.go set SO_MARK on the supervisor's upstream sockets, which
//     needs CAP_NET_ADMIN (or NET_RAW, which is not always kept).
//   - SETUID: jail step 5, setresuid(agent uid) from root.
//   - SETGID: jail step 1, setgroups([gid]), and step 4, setresgid(gid).
//   - SETPCAP: jail step 2, prctl(PR_CAPBSET_DROP) for every capability,
//     so no later execve of the agent can regain one.
//   - KILL: actors/agent.go signals the agent's process group (forwarded
//     signals, SIGKILL after the grace, the group's leftovers when the agent
//     exits). The agent runs under another uid, so kill(2) from uid 0 is
//     allowed only with CAP_KILL.
//   - NET_RAW, only while the kernel verdict path is on (the supervisor's
//     default; not with NoFastPath): kverdict/reset.go opens IPPROTO_RAW
//     sockets to reset the server of a denied flow, to answer its client
//     (TLS alert, 403) and to acknowledge the segments it holds. Without it
//     kverdict.Open fails, the supervisor logs fast_path_unavailable and
//     every connection takes the proxy. The agent never has it: the jail
//     empties the bounding set (step 2), and leaving uid 0 (step 5) and
//     capset (step 6) clear the other sets (jail TestCredentials as root;
//     tests/container's capabilities and raw-socket checks with these
//     capabilities).
//   - NET_BIND_SERVICE, only when one of the ports is below 1024: the
//     proxy, DNS and health listeners bind them.
//
// Not needed, so dropped: DAC_OVERRIDE and DAC_READ_SEARCH (every file the
// supervisor reads is root's own or world-readable: the binary, the
// seccomp profile, the ConfigMap's 0444 policy, /etc/resolv.conf,
// /proc/sys/kernel/cap_last_cap), CHOWN/FOWNER (it changes no file), NET_RAW
// with the fast path off (then it opens no raw socket), SYS_ADMIN (no mounts
// or namespaces; loading the agent's seccomp filter is allowed by
// no_new_privs, which the jail sets first).
func (o Options) Capabilities() []Capability {
	caps := []Capability{
		{"NET_ADMIN", "nftables over netlink (install/remove the table); SO_MARK on the supervisor's own sockets"},
		{"SETUID", "jail: setresuid to the agent's uid"},
		{"SETGID", "jail: setgroups and setresgid to the agent's gid"},
		{"SETPCAP", "jail: PR_CAPBSET_DROP empties the agent's bounding set"},
		{"KILL", "signal the agent's process group, which runs under another uid"},
	}
	if !o.NoFastPath {
		caps = append(caps, Capability{"NET_RAW", "kernel verdict path: raw sockets reset denied flows and acknowledge held segments (without it: proxy only)"})
	}
	if o.ProxyPort < privilegedPortLimit || o.DNSPort < privilegedPortLimit || o.HealthPort < privilegedPortLimit {
		caps = append(caps, Capability{"NET_BIND_SERVICE", "a listener port is below 1024"})
	}
	return caps
}

// capabilityList is Capabilities as podman's and docker's --cap-add take
// them: comma-separated.
func (o Options) capabilityList() string {
	var names []string
	for _, c := range o.Capabilities() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}
