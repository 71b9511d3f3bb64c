package escape

import (
	"io"
	"log"
	"strconv"
)

// auditKind says which audit events a vector must produce.
type auditKind int

const (
	// auditNone: the vector never reaches the supervisor's user-space
	// (nftables rejects it in the kernel, or it is a local syscall).
	auditNone auditKind = iota
	// auditEgress: exactly one egress_* event per TCP flow the agent
	// reported (dst_ip, dst_port, src_port), or per SNI for flows whose
	// source port only a subprocess knew.
	auditEgress
	// auditDNS: exactly one dns_* event per question (qname, qtype).
	auditDNS
	// auditRateLimited: a flood of questions, answered by at least one
	// dns_rate_limited event (one per window, not one per question).
	auditRateLimited
	// auditForged: the vector printed lines shaped like audit events; no
	// event of the log may carry its marker except an agent_output record.
	auditForged
)

// expect is what the suite requires of one vector.
type expect struct {
	want  string // "blocked", or "allowed" for the controls
	audit auditKind
	// reasons, when set, are the acceptable reasons of the vector's
	// audit events (the exact vocabulary of policy/verdict.go,
	// stages/reasons.go and dns/decide.go).
	reasons []string
	// anyDNSMsg accepts dns_allowed too (a query answered locally, never
	// forwarded: ANY gets the RFC 8482 answer).
	anyDNSMsg bool
	// keys are canary-set elements ("addr . proto . port") whose presence
	// means this vector's packets reached the world.
	keys []string
	// maxUpstream, when set, tolerates that many upstream resolver
	// queries carrying the marker: lookups the supervisor makes for the
	// vector, bounded by the agent's DNS budget.
	maxUpstream int
	// kernel are the egress_denied lines the nft rules must produce through
	// NFLOG (source "nflog"), exactly one each: "reason proto dst_ip
	// dst_port" (see kernelLine).
	kernel []string
}

// kernelLine is the key of one kernel denial line.
func kernelLine(reason, proto, ip string, port int) string {
	return reason + " " + proto + " " + ip + " " + strconv.Itoa(port)
}

// Kernel reasons (nft/rules_log.go).
const (
	kUDP      = "udp_not_allowed"
	kICMP     = "icmp_not_allowed"
	kProto    = "proto_not_allowed"
	kSpoofed  = "spoofed_source"
	kLoopback = "loopback_leaves_pod"
	kLocal    = "local_port_not_allowed"
)

const (
	b = "blocked"
	a = "allowed"
)

func udpKey(addr string, port string) string { return addr + " . udp . " + port }

// expectations covers every vector of the attacker, by name.
var expectations = map[string]expect{
	"control_dns_a":    {want: a, audit: auditDNS, reasons: []string{"allowed_domain"}},
	"control_dns_aaaa": {want: a, audit: auditDNS, reasons: []string{"allowed_domain"}},
	"control_tls_v4":   {want: a, audit: auditEgress, reasons: []string{"allowed_domain"}},
	"control_tls_v6":   {want: a, audit: auditEgress, reasons: []string{"allowed_domain"}},

	"tls_denied_name_v4":  {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"tls_denied_name_v6":  {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"http_denied_name_v4": {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"http_denied_name_v6": {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"tcp_denied_ip_v4":    {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"tcp_denied_ip_v6":    {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"tls_denied_ip_v4":    {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"tls_denied_ip_v6":    {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"http_denied_ip_v4":   {want: b, audit: auditEgress, reasons: []string{"ip_literal"}},
	"http_denied_ip_v6":   {want: b, audit: auditEgress, reasons: []string{"ip_literal"}},
	// MPTCP falls back to TCP at the proxy, but SO_ORIGINAL_DST fails on
	// the accepted socket: denied, audited without a destination.
	"mptcp_denied_ip_v4": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip", "origdst_failed"}},

	// Metadata endpoints of every major cloud, and IPv4 embedded in IPv6
	// classified by the address inside (issue #11 item 12): before, these
	// were public or private, denied only for want of a rule.
	"metadata_azure_wireserver": {want: b, audit: auditEgress, reasons: []string{"metadata_address"}},
	"metadata_gcp_v6":           {want: b, audit: auditEgress, reasons: []string{"metadata_address"}},
	"metadata_nat64_local":      {want: b, audit: auditEgress, reasons: []string{"metadata_address"}},
	"metadata_siit":             {want: b, audit: auditEgress, reasons: []string{"metadata_address"}},
	"metadata_teredo":           {want: b, audit: auditEgress, reasons: []string{"metadata_address"}},
	"loopback_teredo":           {want: b, audit: auditEgress, reasons: []string{"blocked_range"}},

	"sni_ip_mismatch_v4":  {want: b, audit: auditEgress, reasons: []string{"sni_ip_mismatch"}},
	"sni_ip_mismatch_v6":  {want: b, audit: auditEgress, reasons: []string{"sni_ip_mismatch"}},
	"host_ip_mismatch_v4": {want: b, audit: auditEgress, reasons: []string{"sni_ip_mismatch"}},
	"host_ip_mismatch_v6": {want: b, audit: auditEgress, reasons: []string{"sni_ip_mismatch"}},
	"absolute_form_v4":    {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"absolute_form_v6":    {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},

	"http_host_mismatch_v4":    {want: b, audit: auditEgress, reasons: []string{"host_mismatch"}},
	"http_host_mismatch_v6":    {want: b, audit: auditEgress, reasons: []string{"host_mismatch"}},
	"http_refused_upgrade_ff":  {want: b, audit: auditEgress, reasons: []string{"malformed_http"}},
	"http_refused_upgrade_vt":  {want: b, audit: auditEgress, reasons: []string{"malformed_http"}},
	"http_refused_upgrade_nel": {want: b, audit: auditEgress, reasons: []string{"malformed_http"}},
	"http_cl0_get":             {want: b, audit: auditEgress, reasons: []string{"body_on_bodiless_method"}},
	"http_cl0_options":         {want: b, audit: auditEgress, reasons: []string{"body_on_bodiless_method"}},

	"tls_split_records_v4":   {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"tls_split_records_v6":   {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"tls_nosni_denied_ip_v4": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"tls_nosni_denied_ip_v6": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"sni_trailing_dot":       {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"sni_mixed_case":         {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"sni_ip_literal_v4":      {want: b, audit: auditEgress, reasons: []string{"ip_literal"}},
	"sni_ip_literal_v6":      {want: b, audit: auditEgress, reasons: []string{"ip_literal"}},
	"sni_nul":                {want: b, audit: auditEgress, reasons: []string{"malformed_client_hello", "invalid_name"}},
	"sni_newline":            {want: b, audit: auditEgress, reasons: []string{"malformed_client_hello", "invalid_name"}},

	"h2c_prior_knowledge_v4": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"h2c_prior_knowledge_v6": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"http_connect_v4":        {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"http_connect_v6":        {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"http_connect_denied_ip": {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},

	"slow_silent_denied_ip": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"slow_partial_hello":    {want: b, audit: auditEgress, reasons: []string{"classify_timeout"}},
	"slowloris_goroutines":  {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip", "classify_timeout"}},

	"dns_udp_denied":               {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}},
	"dns_tcp_denied":               {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}},
	"dns_udp_denied_v6":            {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}},
	"dns_outside_resolver_v4":      {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}, keys: []string{udpKey(world2V4, "53")}},
	"dns_outside_resolver_far":     {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}, keys: []string{udpKey(farResolver, "53")}},
	"dns_outside_resolver_far_tcp": {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}, keys: []string{farResolver + " . tcp . 53"}},
	"dns_outside_resolver_v6":      {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}, keys: []string{udpKey(world2V6, "53")}},
	// An allowed name sent to an outside resolver still goes through the
	// proxy (which forwards it to its own upstream); the outside resolver
	// must not see it.
	"dns_outside_allowed_name": {want: a, audit: auditDNS, reasons: []string{"allowed_domain"}, keys: []string{udpKey(farResolver, "53")}},
	// The exfiltration guard: after the budget of *.exfil.test is spent,
	// the marked name is refused (issue #12; label_limit before).
	"dns_exfil_wildcard": {want: b, audit: auditDNS, reasons: []string{"exfil_budget"}},
	"dns_any":            {want: b, audit: auditDNS, anyDNSMsg: true},
	"dns_port_direct":    {want: b, audit: auditDNS, reasons: []string{"not_in_allowlist"}},
	// Allowed, answered, but without the ECH config.
	"dns_https_ech":      {want: b, audit: auditDNS, anyDNSMsg: true, reasons: []string{"allowed_domain"}},
	"dns_spray_sources":  {want: b, audit: auditRateLimited, maxUpstream: sprayMaxUpstream},
	"sni_flood_wildcard": {want: b, audit: auditEgress, maxUpstream: sniFloodMaxUpstream},

	"udp_quic_v4":            {want: b, keys: []string{udpKey(world2V4, "443")}, kernel: []string{kernelLine(kUDP, "udp", world2V4, 443)}},
	"udp_quic_v6":            {want: b, keys: []string{udpKey(world2V6, "443")}, kernel: []string{kernelLine(kUDP, "udp", world2V6, 443)}},
	"udp_quic_allowed_ip":    {want: b, keys: []string{udpKey(worldV4, "443")}, kernel: []string{kernelLine(kUDP, "udp", worldV4, 443)}},
	"udp_other_v4":           {want: b, keys: []string{udpKey(world2V4, "9999")}, kernel: []string{kernelLine(kUDP, "udp", world2V4, 9999)}},
	"udp_other_v6":           {want: b, keys: []string{udpKey(world2V6, "9999")}, kernel: []string{kernelLine(kUDP, "udp", world2V6, 9999)}},
	"udp_bindtodevice_lo_v4": {want: b, keys: []string{udpKey(world2V4, "9998")}},
	"udp_bindtodevice_lo_v6": {want: b, keys: []string{udpKey(world2V6, "9998")}},
	"udplite_v4":             {want: b, keys: []string{world2V4 + " . udplite . 9997"}, kernel: []string{kernelLine(kProto, "udplite", world2V4, 9997)}},
	"sctp_v4":                {want: b, keys: []string{world2V4 + " . sctp . 9996"}},
	"icmp_ping_v4":           {want: b, keys: []string{world2V4 + " . icmp"}, kernel: []string{kernelLine(kICMP, "icmp", world2V4, 0)}},
	"icmp_ping_v6":           {want: b, keys: []string{world2V6 + " . ipv6-icmp"}, kernel: []string{kernelLine(kICMP, "ipv6-icmp", world2V6, 0)}},
	"raw_socket":             {want: b},

	// Issue 11, item 1: forged sources never get an answer.
	"spoof_src_dns_v4": {want: b, keys: []string{udpKey(world2V4, "9995")}},
	"spoof_src_dns_v6": {want: b, keys: []string{udpKey(world2V6, "9995")}, kernel: []string{kernelLine(kSpoofed, "udp", "2001:db8::2", 53)}},
	"spoof_src_tcp_v4": {want: b, keys: []string{world2V4 + " . tcp . 9995"}},
	"spoof_src_tcp_v6": {want: b, keys: []string{world2V6 + " . tcp . 9995"}, kernel: []string{kernelLine(kSpoofed, "tcp", worldV6, 443)}},
	// Item 2: loopback destinations never leave by the pod's interface.
	// UDP to an undeclared local port is rejected before routing; what
	// the redirects send to the proxies is stopped in postrouting.
	"lo_dst_bound_udp_v4":      {want: b, keys: []string{"127.13.37.1 . udp . 9998"}, kernel: []string{kernelLine(kLocal, "udp", "127.13.37.1", 9998)}},
	"lo_dst_bound_udp_v6":      {want: b, keys: []string{"::1 . udp . 9998"}, kernel: []string{kernelLine(kLocal, "udp", "::1", 9998)}},
	"lo_dst_bound_dns":         {want: b, keys: []string{"127.0.0.1 . udp . 15002", "127.0.0.53 . udp . 53"}, kernel: []string{kernelLine(kLoopback, "udp", "127.0.0.1", 15002)}},
	"lo_dst_scoped_link_local": {want: b, keys: []string{"::1 . tcp . 15001", "fe80::1 . tcp . 7000"}, kernel: []string{kernelLine(kLoopback, "tcp", "::1", 15001)}},
	// Item 3: loopback is policy — a root sidecar and Docker's DNS are
	// closed, the agent's own listener is open (and audited).
	"local_sidecar_tcp":            {want: b, audit: auditEgress, reasons: []string{"local_port_not_allowed"}},
	"local_docker_dns_udp":         {want: b, kernel: []string{kernelLine(kLocal, "udp", "127.0.0.11", 5353)}},
	"control_local_agent_listener": {want: a, audit: auditEgress, reasons: []string{"local_agent_listener"}},
	// Item 8: multicast joins fail (seccomp), reports never leave (nft).
	"mcast_ssm_join_v4": {want: b, keys: []string{"224.0.0.22 . igmp"}},
	"mcast_join_v6":     {want: b, keys: []string{"ff02::16 . ipv6-icmp"}},

	// The proxy's own address serves explicit-proxy requests under the
	// policy (issue #18); another of the supervisor's ports is a loop.
	"proxy_port_loopback":    {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"proxy_port_loopback_v6": {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"proxy_port_own_ip":      {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"proxy_port_allowed":     {want: a, audit: auditEgress, reasons: []string{"allowed_domain"}},
	// The health port is one of the ports meant for the agent (nft's
	// @supervisor_ports): reached directly on any local address, never
	// through the proxy, and as read-only on the pod's address as on
	// loopback.
	"health_port_own_ip": {want: b},
	"health_readonly":    {want: b},

	"curl_noproxy":       {want: b, audit: auditEgress, reasons: []string{"not_in_allowlist"}},
	"static_binary":      {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"daemon_double_fork": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},

	"vhost_keepalive_switch": {want: b, audit: auditEgress},
	"vhost_h2c_learned_ip":   {want: b, audit: auditEgress},
	"vhost_opaque_prefix":    {want: b, audit: auditEgress},

	// The log: the agent prints to its own pipes, never to the log.
	"stdout_forged_denial": {want: b, audit: auditForged},
	"stdout_partial_line":  {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},
	"stdout_nonblock_full": {want: b, audit: auditEgress, reasons: []string{"no_name_for_ip"}},

	"setuid_binary":     {want: b},
	"su":                {want: b},
	"capset":            {want: b},
	"unshare_net":       {want: b},
	"mount":             {want: b},
	"ptrace_pid1":       {want: b},
	"sysctl_ip_forward": {want: b},
	"nft_flush":         {want: b},
	"kill_pid1":         {want: b},
}

// World addresses as the canary sets print them.
const (
	worldV4  = "198.51.100.1"
	worldV6  = "2001:db8::1"
	world2V4 = "198.51.100.3"
	world2V6 = "2001:db8::3"
)

// legitKeys are the canary elements the supervisor itself produces:
// proxied allowed connections and upstream DNS, all to the world's main
// address.
var legitKeys = map[string]bool{
	worldV4 + " . tcp . 443": true, worldV4 + " . tcp . 80": true,
	worldV4 + " . udp . 53": true, worldV4 + " . tcp . 53": true,
	worldV6 + " . tcp . 443": true, worldV6 + " . tcp . 80": true,
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
