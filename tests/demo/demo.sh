#!/usr/bin/env bash
# make demo: the real forge-supervisor as PID 1 around a small agent, in a
# throwaway pair of network namespaces. Needs root, iproute2, nftables
# kernel support, dnsmasq, curl, dig, nc (all installed by .ci/run).
# Everything it creates is removed on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN="${FORGE_SUPERVISOR_BIN:-$PWD/bin/forge-supervisor}"
ID="$$"
W="fdw$ID"; A="fda$ID"
TMP="$(mktemp -d /tmp/forge-demo.XXXXXX)"
chmod 755 "$TMP"
PIDS=()

cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$W" 2>/dev/null || true
	ip netns del "$A" 2>/dev/null || true
	rm -rf "/etc/netns/$A" "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "make demo needs root (network namespaces, nftables)"; exit 1; }
for t in ip dnsmasq curl dig nc unshare; do
	command -v "$t" >/dev/null || { echo "make demo needs $t (see .ci/run for the package list)"; exit 1; }
done

echo "== building the demo world"
go build -o "$TMP/worldd" ./tests/demo/worldd
go build -o "$TMP/agentlines" ./tests/demo/agentlines
ip netns add "$W"; ip netns add "$A"
ip link add "vw$ID" type veth peer name "va$ID"
ip link set "vw$ID" netns "$W"; ip link set "va$ID" netns "$A"
for ns in "$W" "$A"; do
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
ip -n "$W" addr add 198.51.100.1/24 dev "vw$ID"; ip -n "$W" addr add 198.51.100.3/24 dev "vw$ID"
ip -n "$W" addr add 2001:db8::1/64 dev "vw$ID" nodad; ip -n "$W" link set "vw$ID" up
ip -n "$A" addr add 198.51.100.2/24 dev "va$ID"; ip -n "$A" addr add 2001:db8::2/64 dev "va$ID" nodad
ip -n "$A" link set "va$ID" up
ip -n "$A" route add default via 198.51.100.1
ip netns exec "$A" sysctl -qw net.ipv4.ping_group_range="0 2147483647"
mkdir -p "/etc/netns/$A"; echo "nameserver 198.51.100.1" > "/etc/netns/$A/resolv.conf"

ip netns exec "$W" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
	--bind-interfaces --listen-address=198.51.100.1 --user=root --pid-file= \
	--address=/allowed.test/198.51.100.1 --address=/evil.test/198.51.100.1 --address=/other.test/198.51.100.3 \
	>/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$W" "$TMP/worldd" -ca "$TMP/ca.pem" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/ca.pem" ] && break; sleep 0.1; done

cat > "$TMP/egress_allowlist.json" <<'JSON'
{"profile":"standard","mode":"allowlist","allowed_domains":["allowed.test"],"tool_domains":[],"all_domains":["allowed.test"]}
JSON
cp tests/demo/agent.sh "$TMP/agent.sh"
echo "   world: 198.51.100.1 (allowed.test, evil.test), 198.51.100.3 (other.test)"
echo "   policy: $(cat "$TMP/egress_allowlist.json")"
echo
echo "== running forge-supervisor as PID 1 in the agent namespace"
set +e
FORGE_SUPERVISOR_POLICY_PATH="$TMP/egress_allowlist.json" \
FORGE_SUPERVISOR_DNS_UPSTREAM=198.51.100.1:53 \
	ip netns exec "$A" unshare --pid --fork --mount-proc --kill-child \
	"$BIN" -- /bin/sh "$TMP/agent.sh" "$TMP/ca.pem" >"$TMP/supervisor.log" 2>"$TMP/supervisor.err"
code=$?
set -e
echo
echo "== what the agent saw"
# The agent never writes to the log itself: each line it printed is an
# agent_output record ({"msg":"agent_output","stream":"stdout","line":...}),
# so it cannot pass for an audit event. Unwrapped here for reading.
"$TMP/agentlines" < "$TMP/supervisor.log"
echo
echo "== denials (NDJSON audit events)"
grep -E '"msg":"(egress_denied|dns_denied)"' "$TMP/supervisor.log" || true
echo
echo "== summary"
printf 'allowed connections: %s   denied connections: %s   denied DNS queries: %s\n' \
	"$(grep -c '"msg":"egress_allowed"' "$TMP/supervisor.log" || true)" \
	"$(grep -c '"msg":"egress_denied"' "$TMP/supervisor.log" || true)" \
	"$(grep -c '"msg":"dns_denied"' "$TMP/supervisor.log" || true)"
echo "supervisor exit status: $code (the agent's)"
if [ -s "$TMP/supervisor.err" ]; then echo "stderr:"; cat "$TMP/supervisor.err"; fi
if grep -q UNEXPECTED "$TMP/supervisor.log"; then echo "DEMO FAILED: an attempt did not behave as expected"; exit 1; fi
