# Allows everything and echoes its input into the verdict, so tests can see
# exactly what the supervisor asks: reason = kind, rule = name|ip|port.
package forge.egress

verify_sni_ip := false

decision := {
	"allow": true,
	"reason": input.kind,
	"rule": sprintf("%s|%s|%d", [input.name, input.ip, input.port]),
}
