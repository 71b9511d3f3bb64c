package dns

import (
	"context"
	"net/netip"
	"time"

	"github.com/forge/forge-supervisor/obs"
	"github.com/forge/forge-supervisor/policy"
)

// identityTimeout bounds one lookup of the asking process: a /proc scan
// costs ~15 µs a process, and a query must not wait on a slow one for
// longer than a client's retry interval. An owner not found in time is
// unknown, which fails closed for a policy that needs it.
const identityTimeout = 250 * time.Millisecond

// processDecider is the part of *policy.Policy that knows about process
// identity. Test policies may lack it: they then get no identity.
type processDecider interface {
	NeedsProcess() bool
	CheckNameFor(name string, port uint16, proc *policy.Process) policy.Verdict
}

// identify returns the process that sent the query when the policy needs
// it or the audit asks for it, and records it on ev; nil otherwise.
func (p *Proxy) identify(pol decider, client netip.AddrPort, overTCP bool, ev *obs.DNSQuery) *policy.Process {
	pd, isPD := pol.(processDecider)
	if p.cfg.Identify == nil || !isPD || !(p.cfg.IdentifyAlways || pd.NeedsProcess()) {
		return nil
	}
	proc := &policy.Process{Unknown: "lookup_failed"}
	if client.IsValid() && client.Port() != 0 {
		ctx, cancel := context.WithTimeout(p.life, identityTimeout)
		if got := p.cfg.Identify(ctx, overTCP, client); got != nil {
			proc = got
		}
		cancel()
	}
	ev.Process = &obs.Process{PID: proc.PID, Exe: proc.Exe, Unknown: proc.Unknown}
	return proc
}

// checkName asks pol about name on behalf of proc when it can.
func checkName(pol decider, name string, proc *policy.Process) policy.Verdict {
	if pd, ok := pol.(processDecider); ok && proc != nil {
		return pd.CheckNameFor(name, 0, proc)
	}
	return pol.CheckName(name, 0)
}
