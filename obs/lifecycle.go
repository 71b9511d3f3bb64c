package obs

import (
	"time"

	"go.uber.org/zap"
)

// Lifecycle event names: the msg field of the supervisor's own events. They
// are rare and always written (never sampled).
const (
	MsgInterceptionDegraded = "interception_degraded"
	MsgPolicyReloaded       = "policy_reloaded"
	MsgPolicyReloadFailed   = "policy_reload_failed"
	MsgAgentStarted         = "agent_started"
	MsgAgentExited          = "agent_exited"
	MsgSupervisorStarted    = "supervisor_started"
	MsgSupervisorStopped    = "supervisor_stopped"
)

// SupervisorStarted is logged once the supervisor is serving, just before
// the agent starts.
type SupervisorStarted struct {
	Version      string
	PolicyPath   string
	PolicyMode   string // e.g. "allowlist"
	Rules        int    // counts only, never policy content
	Interception string // "kernel" or "fallback"
	DryRun       bool
	ProxyPort    uint16
	DNSPort      uint16
	HealthPort   uint16
	Startup      time.Duration // from process start to serving
}

// SupervisorStarted writes supervisor_started and sets the interception
// mode gauge.
func (a *Auditor) SupervisorStarted(e SupervisorStarted) {
	if a.m != nil && e.Interception != "" {
		a.m.SetInterception(e.Interception)
	}
	a.log.Info(MsgSupervisorStarted,
		zap.String("version", e.Version),
		zap.String("policy_path", e.PolicyPath),
		zap.String("policy_mode", e.PolicyMode),
		zap.Int("rules", e.Rules),
		zap.String("interception", e.Interception),
		zap.Bool("dry_run", e.DryRun),
		zap.Uint16("proxy_port", e.ProxyPort),
		zap.Uint16("dns_port", e.DNSPort),
		zap.Uint16("health_port", e.HealthPort),
		zap.Float64("startup_ms", durationMS(e.Startup)),
	)
}

// SupervisorStopped writes supervisor_stopped: why the supervisor is
// exiting and with which status.
func (a *Auditor) SupervisorStopped(reason string, exitCode int, uptime time.Duration) {
	a.log.Info(MsgSupervisorStopped,
		zap.String("reason", reason),
		zap.Int("exit_code", exitCode),
		zap.Float64("uptime_s", uptime.Seconds()),
	)
}

// InterceptionDegraded writes interception_degraded (level warn): the kernel
// path could not be installed (err says why) and the explicit-proxy
// fallback described by fallback (e.g. "explicit HTTP CONNECT/SOCKS5 proxy
// on 127.0.0.1:15001") is in use. It sets the interception mode gauge to
// "fallback".
func (a *Auditor) InterceptionDegraded(err error, fallback string) {
	if a.m != nil {
		a.m.SetInterception(InterceptionFallback)
	}
	a.log.Warn(MsgInterceptionDegraded,
		zap.String("mode", InterceptionFallback),
		zap.String("reason", errString(err)),
		zap.String("fallback", fallback),
	)
}

// PolicyReload is the outcome of loading or reloading the policy.
type PolicyReload struct {
	Path     string
	Rules    int    // number of rules loaded (counts only, never content)
	Mode     string // the policy's mode, e.g. "allowlist"
	Duration time.Duration
}

// PolicyReloaded writes policy_reloaded and counts a successful reload.
func (a *Auditor) PolicyReloaded(r PolicyReload) {
	if a.m != nil {
		a.m.PolicyReloads.WithLabelValues(ReloadOK).Inc()
		a.m.PolicyReloadOK.Set(1)
	}
	a.log.Info(MsgPolicyReloaded,
		zap.String("policy_path", r.Path),
		zap.String("mode", r.Mode),
		zap.Int("rules", r.Rules),
		zap.Float64("duration_ms", durationMS(r.Duration)),
	)
}

// PolicyReloadFailed writes policy_reload_failed (level error) and counts a
// failed reload. The previous policy stays in force.
func (a *Auditor) PolicyReloadFailed(path string, err error) {
	if a.m != nil {
		a.m.PolicyReloads.WithLabelValues(ReloadError).Inc()
		a.m.PolicyReloadOK.Set(0)
	}
	a.log.Error(MsgPolicyReloadFailed,
		zap.String("policy_path", path),
		zap.String("error", errString(err)),
		zap.Bool("previous_policy_kept", true),
	)
}

// AgentStarted is the record of one start of the agent.
type AgentStarted struct {
	PID     int
	Argv0   string // the command only; arguments may hold secrets
	UID     uint32
	GID     uint32
	Seccomp bool
	Restart bool // false for the first start
}

// AgentStarted writes agent_started and counts restarts.
func (a *Auditor) AgentStarted(e AgentStarted) {
	if a.m != nil && e.Restart {
		a.m.AgentRestarts.Inc()
	}
	a.log.Info(MsgAgentStarted,
		zap.Int("pid", e.PID),
		zap.String("argv0", e.Argv0),
		zap.Uint32("uid", e.UID),
		zap.Uint32("gid", e.GID),
		zap.Bool("seccomp", e.Seccomp),
		zap.Bool("restart", e.Restart),
	)
}

// AgentExited is the record of the agent's end.
type AgentExited struct {
	PID      int
	ExitCode int    // 128+N when killed by signal N
	Signal   string // e.g. "SIGKILL"; "" when it exited
	Duration time.Duration
}

// AgentExited writes agent_exited and sets the exit code gauge.
func (a *Auditor) AgentExited(e AgentExited) {
	if a.m != nil {
		a.m.AgentExitCode.Set(float64(e.ExitCode))
	}
	a.log.Info(MsgAgentExited,
		zap.Int("pid", e.PID),
		zap.Int("exit_code", e.ExitCode),
		zap.String("signal", e.Signal),
		zap.Float64("duration_s", e.Duration.Seconds()),
	)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
