package forge.egress

allowed_private_cidrs := ["0.0.0.0/0"]

decision := {"allow": false, "reason": "x", "rule": ""}
