package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/forge/forge-supervisor/policy"
)

// CheckQuery is one hypothetical connection or DNS question.
type CheckQuery struct {
	Name string     // SNI, Host or DNS name; may be empty with IP
	Port uint16     // destination port (ignored with DNS)
	IP   netip.Addr // destination address; invalid: decide the name alone
	DNS  bool       // a DNS question instead of a connection
	// Exe and Ancestors describe the asking process for a policy that
	// reads input.process; Exe "" means no process is known.
	Exe       string
	Ancestors []string
	UID       uint32
}

// CheckResult is what check prints.
type CheckResult struct {
	Decision string   `json:"decision"` // "allow" or "deny"
	Reason   string   `json:"reason"`
	Rule     string   `json:"rule"`
	Kind     string   `json:"kind"` // "tcp" or "dns"
	Name     string   `json:"name"`
	IP       string   `json:"ip,omitempty"`
	Port     uint16   `json:"port"`
	Exe      string   `json:"exe,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// Check decides q against p as the supervisor would and writes the
// result, as text or JSON. It returns ExitOK for allow, ExitFail for deny.
//
// With an address, the connection is decided in full (always-blocked and
// private ranges included) and the name is taken to resolve to that
// address, as if the agent had just looked it up. Without one, only the
// name and port are asked, as the explicit proxy does before it resolves.
func Check(w io.Writer, p *policy.Policy, q CheckQuery, asJSON bool) int {
	var proc *policy.Process
	if q.Exe != "" {
		proc = &policy.Process{Exe: q.Exe, Ancestors: q.Ancestors, UID: q.UID}
	}
	res := CheckResult{Kind: "tcp", Name: q.Name, Port: q.Port, Exe: q.Exe}
	var v policy.Verdict
	switch {
	case q.DNS:
		res.Kind, res.Port = "dns", 0
		v = p.CheckNameFor(q.Name, 0, proc)
	case q.IP.IsValid():
		res.IP = q.IP.String()
		v = p.DecideFor(context.Background(), policy.Request{Name: q.Name, IP: q.IP, Port: q.Port}, proc, claimedResolver{name: q.Name, ip: q.IP})
	default:
		v = p.CheckNameFor(q.Name, q.Port, proc)
		res.Notes = append(res.Notes, "no -ip: the destination address was not checked (always-blocked and private ranges, allowed_private_cidrs)")
	}
	if p.NeedsProcess() && proc == nil {
		res.Notes = append(res.Notes, "the policy reads input.process: give -exe (and -ancestors) to ask for a process")
	}
	res.Decision, res.Reason, res.Rule = "deny", v.Reason, v.Rule
	if v.Allow {
		res.Decision = "allow"
	}
	if asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintf(w, "%s\n", b)
	} else {
		writeCheckText(w, res)
	}
	if v.Allow {
		return ExitOK
	}
	return ExitFail
}

func writeCheckText(w io.Writer, r CheckResult) {
	what := r.Kind + " " + r.Name
	if r.Kind == "tcp" {
		dst := r.IP
		if dst == "" {
			dst = "(any address)"
		}
		what = fmt.Sprintf("tcp %s → %s port %d", orNone(r.Name), dst, r.Port)
	}
	if r.Exe != "" {
		what += " from " + r.Exe
	}
	fmt.Fprintf(w, "%s: %s\n", strings.ToUpper(r.Decision), what)
	fmt.Fprintf(w, "  reason: %s\n", r.Reason)
	fmt.Fprintf(w, "  rule:   %s\n", orNone(r.Rule))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note:   %s\n", n)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// claimedResolver answers as if the agent had resolved name to ip: the
// hypothetical connection of check.
type claimedResolver struct {
	name string
	ip   netip.Addr
}

func (c claimedResolver) Resolves(_ context.Context, name string, ip netip.Addr) bool {
	n, err := policy.NormalizeName(c.name)
	return err == nil && n == name && ip == c.ip
}

func (c claimedResolver) NamesFor(ip netip.Addr) []string {
	if ip == c.ip && c.name != "" {
		return []string{c.name}
	}
	return nil
}
