package forge.egress

verify_sni_ip := "yes"

decision := {"allow": false, "reason": "x", "rule": ""}
