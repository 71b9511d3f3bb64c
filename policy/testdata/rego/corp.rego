# A hand-written policy: HTTPS and DNS for the company's domains, SSH to
# one bastion, Postgres by address, and a private build cache.
package forge.egress

verify_sni_ip := true

allowed_private_cidrs := ["10.20.0.0/16"]

corp_suffixes := {"corp.example", "example.org"}

# corp_name holds for a corp suffix itself and every name under one.
corp_name(name) if name in corp_suffixes

corp_name(name) if {
	some suffix in corp_suffixes
	endswith(name, concat("", [".", suffix]))
}

default decision := {"allow": false, "reason": "not_corp", "rule": ""}

decision := {"allow": true, "reason": "corp_dns", "rule": "corp_suffixes"} if {
	input.kind == "dns"
	corp_name(input.name)
}

decision := {"allow": true, "reason": "corp_https", "rule": "corp_suffixes"} if {
	input.kind == "tcp"
	input.port == 443
	corp_name(input.name)
}

decision := {"allow": true, "reason": "bastion_ssh", "rule": "bastion"} if {
	input.kind == "tcp"
	input.name == "bastion.corp.example"
	input.port == 22
}

decision := {"allow": true, "reason": "postgres_by_ip", "rule": "pg"} if {
	input.kind == "tcp"
	input.ip == "198.51.100.7"
	input.port == 5432
}
