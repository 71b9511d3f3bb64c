package forge.other

decision := {"allow": true, "reason": "x", "rule": ""}
