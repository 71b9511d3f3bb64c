package forge.egress

decision := {"allow": true,
	"reason": "x"

