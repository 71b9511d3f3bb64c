package obs

import "go.uber.org/zap"

// Process is the agent process behind a flow or a DNS query, in audit
// events when process identity is on (FORGE_SUPERVISOR_AUDIT_PROCESS, or a
// policy that reads input.process). When it is on, every egress and DNS
// event carries all three fields; Exe is "" and Unknown says why when the
// owner could not be identified.
type Process struct {
	PID     int
	Exe     string
	Unknown string // procid's reason ("owner_exited", ...); "" when identified
}

// appendProcessFields appends pid, exe and process_unknown when p is set,
// in the order of processJSON.
func appendProcessFields(buf []zap.Field, p *Process) []zap.Field {
	if p == nil {
		return buf
	}
	return append(buf,
		zap.Int("pid", p.PID),
		zap.String("exe", truncateName(p.Exe)),
		zap.String("process_unknown", p.Unknown),
	)
}

// processJSON is the /denials form of the process fields: absent when
// identity is off, all three present when it is on (as in the log line).
type processJSON struct {
	PID     *int    `json:"pid,omitempty"`
	Exe     *string `json:"exe,omitempty"`
	Unknown *string `json:"process_unknown,omitempty"`
}

func (p *Process) json() processJSON {
	if p == nil {
		return processJSON{}
	}
	exe := truncateName(p.Exe)
	return processJSON{PID: &p.PID, Exe: &exe, Unknown: &p.Unknown}
}
