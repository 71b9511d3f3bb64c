package forge.egress

allow := true
