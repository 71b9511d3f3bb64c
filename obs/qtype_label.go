package obs

// knownQTypes are the query types that get their own value of the qtype
// label: what resolvers, browsers, package managers and mail or service
// discovery really ask. The set is fixed rather than first come, first
// served: a guard that admits the first N distinct values lets an agent
// fill it with junk types, after which TXT, HTTPS or SRV would be counted
// as "other" — exactly the types a tunnel uses.
var knownQTypes = map[string]struct{}{
	"A": {}, "AAAA": {}, "CNAME": {}, "NS": {}, "SOA": {}, "PTR": {},
	"MX": {}, "TXT": {}, "SRV": {}, "NAPTR": {}, "CAA": {}, "ANY": {},
	"HTTPS": {}, "SVCB": {}, "DS": {}, "DNSKEY": {}, "RRSIG": {}, "NSEC": {},
	"NSEC3": {}, "TLSA": {}, "SSHFP": {}, "CERT": {}, "URI": {}, "HINFO": {},
	"NULL": {}, "AXFR": {}, "IXFR": {},
}

// qtypeLabel is the qtype label value of a query type's name: the name
// itself when it is a known type, labelOther otherwise.
func qtypeLabel(qtype string) string {
	if _, ok := knownQTypes[qtype]; ok {
		return qtype
	}
	return labelOther
}
