package main

import (
	"context"
	"time"

	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/obs"
)

// kernelDenials writes one egress_denied line per flow the nft rules
// dropped or rejected and logged to NFLOG (source "nflog"), through the
// flow gate; what the gate or the kernel drops is counted.
func kernelDenials(ctx context.Context, r *nft.LogReader, audit *obs.Auditor, km *obs.KernelMetrics) error {
	gate := nft.NewFlowGate()
	emit := func(p nft.LoggedPacket) {
		switch gate.Admit(p, time.Now()) {
		case nft.GateLog:
			f := obs.Flow{Proto: p.Proto, SrcPort: p.SrcPort, DstPort: p.DstPort, Reason: p.Reason, Source: "nflog"}
			if p.Dst.IsValid() {
				f.DstIP = p.Dst.String()
			}
			audit.Egress(f)
		case nft.GateRateLimited:
			km.LogDropped.WithLabelValues(obs.KernelLogRateLimited).Inc()
		}
	}
	lost := func() { km.LogDropped.WithLabelValues(obs.KernelLogLost).Inc() }
	return r.Serve(ctx, emit, lost)
}

// openKernelLog binds the NFLOG group the rules will log to. Without
// nfnetlink_log (or with the group taken) the supervisor says so loudly and
// installs the rules without log statements: they still drop and reject.
func openKernelLog(audit *obs.Auditor) (*nft.LogReader, uint16) {
	r, err := nft.OpenLog(nft.DefaultLogGroup)
	if err != nil {
		audit.KernelLogUnavailable(err)
		return nil, 0
	}
	return r, nft.DefaultLogGroup
}
