package forge.egress

decision := {"allow": r.status_code == 200, "reason": "asked_the_web", "rule": ""} if {
	r := http.send({"method": "GET", "url": "http://198.51.100.1/"})
}
