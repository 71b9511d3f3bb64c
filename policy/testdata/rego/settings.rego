package forge.egress

mode := "dev-open"

verify_sni_ip := false

allow_private_ips := true

allowed_private_cidrs := {"10.0.0.0/8", "fd00::/8"}

default decision := {"allow": false, "reason": "inert_in_dev_open"}
