package obs

import "go.uber.org/zap"

// MsgSeccompProfileChanged is logged when the seccomp profile file changes
// while the agent runs: the running agent keeps its filter, the next start
// of an agent loads the new file.
const MsgSeccompProfileChanged = "seccomp_profile_changed"

// SeccompProfileChanged writes seccomp_profile_changed (level warn when the
// new file does not load, so the next start would fail).
func (a *Auditor) SeccompProfileChanged(path string, err error) {
	fields := []zap.Field{
		zap.String("seccomp_path", path),
		zap.String("applies", "next agent start"),
		zap.Bool("valid", err == nil),
	}
	if err != nil {
		a.log.Warn(MsgSeccompProfileChanged, append(fields, zap.String("error", err.Error()))...)
		return
	}
	a.log.Info(MsgSeccompProfileChanged, fields...)
}
