package forge.egress

mode := "open"

decision := {"allow": false, "reason": "x", "rule": ""}
