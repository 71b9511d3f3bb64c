package stages

// Every reason the engine itself writes into an audit line, beside the
// policy's own (policy/verdict.go). Tests assert them; operators grep for
// them: the words are part of the log schema (docs/audit-events.md).

// Reasons decided by the engine itself, before or after the policy.
const (
	ReasonOrigDstFailed   = "origdst_failed" // no original destination (not redirected, or conntrack lost it)
	ReasonLoop            = "loop"           // the destination is one of the supervisor's own listeners
	ReasonMalformedTLS    = "malformed_client_hello"
	ReasonMalformedHTTP   = "malformed_http"
	ReasonHeaderTooLarge  = "header_too_large"
	ReasonClassifyTimeout = "classify_timeout" // a TLS/HTTP prefix, then silence
	ReasonClientClosed    = "client_closed"
	ReasonHostPort        = "host_port_mismatch" // Host/target names another port than the destination
	ReasonClassifyError   = "classify_error"
	ReasonDialFailed      = "dial_failed"
	ReasonShutdown        = "shutdown"
)

// Reasons decided by the explicit proxy's handshake.
const (
	ReasonNotProxyRequest = "not_a_proxy_request"          // an origin-form HTTP request sent to the proxy
	ReasonProxyScheme     = "unsupported_proxy_scheme"     // absolute-form https://: HTTPS goes through CONNECT
	ReasonDNSFailed       = "dns_failed"                   // the requested name did not resolve
	ReasonMalformedSOCKS5 = "malformed_socks5"             // not a valid SOCKS5 greeting or request
	ReasonSOCKS5NoMethod  = "socks5_no_acceptable_method"  // the client requires authentication
	ReasonSOCKS5Command   = "socks5_command_not_supported" // BIND, UDP ASSOCIATE: only CONNECT is proxied
	ReasonSOCKS5AddrType  = "socks5_address_type_not_supported"
)

// ReasonHostSwitch: a later request on a kept-alive cleartext HTTP
// connection named another host (or port) than the one the policy allowed.
// A server at the allowed IP may host that name too (shared-IP virtual
// hosting), so checking only the first request would let any later one
// reach a denied site.
const ReasonHostSwitch = "host_switch"

// ReasonUpgradeProto: a request asked to upgrade to a protocol other than
// WebSocket. After an accepted h2c or TLS upgrade the stream carries
// requests the gate cannot read (HTTP/2 frames may name any :authority),
// so only WebSocket, whose frames carry no destination, is let through.
const ReasonUpgradeProto = "upgrade_not_websocket"

// ReasonHostMismatch: an absolute-form or CONNECT target and the Host
// header name different hosts (issue #11 item 4).
const ReasonHostMismatch = "host_mismatch"

// ReasonBodyOnBodiless: a GET, HEAD, OPTIONS, DELETE or TRACE request
// carries a body. Servers that do not read such bodies (Python's) take it
// for the next request — CL.0 smuggling — so it is refused, not guessed at.
const ReasonBodyOnBodiless = "body_on_bodiless_method"

// Reasons of the local decision (issue 11, items 1 and 3).
const (
	// ReasonNonLocalSource: the client's address is not one of this pod's.
	// nft drops the agent's spoofed packets before they get here; this is
	// the second wall, so the listener never talks to a forged peer.
	ReasonNonLocalSource = "nonlocal_source"
	// ReasonLocalPort: a local listener the agent does not own and no
	// allowed_local_ports entry names (a sidecar, Docker's DNS, a root
	// relay), or no listener at all.
	ReasonLocalPort = "local_port_not_allowed"
	// ReasonLocalAgentListener: the listener belongs to the agent's UID.
	ReasonLocalAgentListener = "local_agent_listener"
	// ReasonAllowedLocalPort: the port is in allowed_local_ports.
	ReasonAllowedLocalPort = "allowed_local_port"
)
