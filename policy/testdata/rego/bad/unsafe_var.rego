package forge.egress

decision := {"allow": true, "reason": "x", "rule": y} if {
	input.port == 443
}
