package forge.egress

mode := input.mode

decision := {"allow": false, "reason": "x", "rule": ""}
