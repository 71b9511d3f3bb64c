#!/bin/sh
# The demo agent. It runs jailed under forge-supervisor (UID 1000, no
# capabilities, seccomp) and tries a few allowed and denied things.
# Each attempt prints one row: what, expected, observed.
CA="$1"
row() { printf '%-44s %-8s %s\n' "$1" "$2" "$3"; }
try() { # what expected command...
	what="$1"; exp="$2"; shift 2
	if out=$("$@" 2>&1); then obs="allowed"; else obs="blocked"; fi
	if [ "$obs" = "$exp" ]; then mark="ok"; else mark="UNEXPECTED"; fi
	row "$what" "$exp" "$obs ($mark) $(printf '%s' "$out" | head -c 60 | tr '\n' ' ')"
}
echo "agent: uid=$(id -u) gid=$(id -g) FORGE_SUPERVISOR=$FORGE_SUPERVISOR"
row "ATTEMPT" "EXPECT" "OBSERVED"
try "curl https://allowed.test/"                 allowed curl -sS --max-time 5 --cacert "$CA" https://allowed.test/
try "curl https://evil.test/ (DNS)"              blocked curl -sS --max-time 5 --cacert "$CA" https://evil.test/
try "curl https://evil.test/ (IP given)"         blocked curl -sS --max-time 5 --cacert "$CA" --resolve evil.test:443:198.51.100.1 https://evil.test/
try "curl -H 'Host: evil.test' http://allowed"   blocked curl -sSf --max-time 5 -H "Host: evil.test" http://allowed.test/
try "curl allowed SNI to another IP"             blocked curl -sS --max-time 5 --cacert "$CA" --resolve allowed.test:443:198.51.100.3 https://allowed.test/
try "raw TCP to 198.51.100.3:7000"               blocked sh -c 'printf hi | nc -w 3 198.51.100.3 7000 | grep -q echo'
try "dig evil.test"                              blocked sh -c 'dig +time=2 +tries=1 evil.test | grep -q "status: NOERROR"'
try "dig allowed.test"                           allowed sh -c 'dig +time=2 +tries=1 allowed.test | grep -q "status: NOERROR"'
try "UDP to 198.51.100.1:443 (QUIC)"             blocked dig +time=1 +tries=1 -p 443 @198.51.100.1 quic.test
try "ping 198.51.100.1"                          blocked ping -c 1 -W 1 198.51.100.1
try "unshare -n (new network namespace)"         blocked unshare -n true
