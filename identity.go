package main

import (
	"context"
	"net/netip"

	"github.com/forge/forge-supervisor/policy"
	"github.com/forge/forge-supervisor/procid"
	"github.com/forge/forge-supervisor/sockdiag"
)

// identity adapts procid to the hooks of the connection engine and the DNS
// proxy: each asks with a 4-tuple and gets the policy's view of the
// process. The resolver is opened whatever the policy, so a reload to a
// policy that reads input.process finds it ready. A nil *identity (no
// sock_diag) gives nil hooks: identity off.
type identity struct {
	r *procid.Resolver
}

func newIdentity() (*identity, error) {
	r, err := procid.New(procid.Options{})
	if err != nil {
		return nil, err
	}
	return &identity{r: r}, nil
}

func (id *identity) close() {
	if id != nil {
		id.r.Close()
	}
}

// setRoot names the agent's first process, where parent chains end.
func (id *identity) setRoot(pid int) {
	if id != nil {
		id.r.SetRoot(pid)
	}
}

// tcpHook is stages.Config.Identify.
func (id *identity) tcpHook() func(context.Context, netip.AddrPort, netip.AddrPort) *policy.Process {
	if id == nil {
		return nil
	}
	return id.tcp
}

// dnsHook is dns.Config.Identify.
func (id *identity) dnsHook() func(context.Context, bool, netip.AddrPort) *policy.Process {
	if id == nil {
		return nil
	}
	return id.dns
}

func (id *identity) tcp(ctx context.Context, src, dst netip.AddrPort) *policy.Process {
	return id.lookup(ctx, sockdiag.TCP, src, dst)
}

// dns asks for a DNS query, which knows only its source.
func (id *identity) dns(ctx context.Context, overTCP bool, src netip.AddrPort) *policy.Process {
	proto := sockdiag.UDP
	if overTCP {
		proto = sockdiag.TCP
	}
	return id.lookup(ctx, proto, src, netip.AddrPort{})
}

func (id *identity) lookup(ctx context.Context, proto sockdiag.Proto, src, dst netip.AddrPort) *policy.Process {
	info, err := id.r.Lookup(ctx, proto, src, dst)
	if err != nil {
		return &policy.Process{Unknown: info.Reason}
	}
	return &policy.Process{PID: info.PID, Exe: info.Exe, Cmdline: info.Cmdline, UID: info.UID, Ancestors: info.Ancestors}
}
