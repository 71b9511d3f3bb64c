package escape

import (
	"fmt"
	"strings"

	"github.com/forge/forge-supervisor/tests/world"
)

// The DNS budget vectors (issue #11 item 7) are judged by counts, not by
// the absence of traffic: some lookups are the supervisor's legitimate
// work, but only as many as the agent's budget allows.

// sniFloodMaxUpstream: 1,500 fresh names make 3,000 lookups without a
// budget; with the default one (burst 400, 200/s) a run of a few seconds
// makes around a thousand. Half of the unbounded count is the line.
const sniFloodMaxUpstream = 1500

// sprayMaxUpstream: the spray's name is allowed, so each answered query
// may be forwarded (the world's resolver answers with TTL 0, which is not
// cached); more than half of its 3,000 queries is a budget per source.
const sprayMaxUpstream = 1500

// tolerateUpstream drops the upstream resolver's lines from ev when there
// are at most e.maxUpstream of them, and says how many there were.
func (e expect) tolerateUpstream(ev []string) ([]string, string) {
	if e.maxUpstream == 0 {
		return ev, ""
	}
	n := 0
	for _, x := range ev {
		if strings.HasPrefix(x, "upstream resolver") {
			n++
		}
	}
	note := fmt.Sprintf("%d upstream lookups (at most %d)", n, e.maxUpstream)
	if n > e.maxUpstream {
		return []string{note}, note
	}
	return filterOut(ev, "upstream resolver"), note
}

// checkRateLimited passes when the run has at least one dns_rate_limited
// line, and not a flood of them (one per 10 s window).
func checkRateLimited(events []world.Event) (string, bool) {
	n := 0
	for _, ev := range events {
		if ev.Msg() == "dns_rate_limited" {
			n++
		}
	}
	return fmt.Sprintf("%d dns_rate_limited", n), n >= 1 && n <= 20
}
