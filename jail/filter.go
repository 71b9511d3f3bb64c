package jail

import (
	"fmt"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// check compiles the profile into a filter and releases it: every problem
// libseccomp would find in the child is found in the supervisor instead.
func (p *Profile) check(logMode bool) error {
	f, err := p.compile(logMode, currentKernel())
	if err != nil {
		return err
	}
	f.Release()
	return nil
}

// compile builds the seccomp filter for the agent: native architecture only,
// bad-architecture action KILL_PROCESS, rules applied with Docker's
// includes/excludes semantics for a process that holds no capabilities.
// In log mode every denying action becomes SCMP_ACT_LOG.
func (p *Profile) compile(logMode bool, kernel kernelVersion) (*seccomp.ScmpFilter, error) {
	defAct := p.action(p.DefaultAction, p.DefaultErrnoRet, logMode)
	f, err := seccomp.NewFilter(defAct)
	if err != nil {
		return nil, fmt.Errorf("seccomp: new filter (defaultAction %s): %w", p.DefaultAction, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	// A syscall made through another ABI (int $0x80, x32 numbers) is not
	// covered by the native rules, so it must not run at all.
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		return nil, fmt.Errorf("seccomp: set bad-architecture action: %w", err)
	}
	// The jail sets no_new_privs itself, earlier and explicitly.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, fmt.Errorf("seccomp: clear libseccomp's own NNP attribute: %w", err)
	}
	for i := range p.Syscalls {
		if err := p.addRule(f, &p.Syscalls[i], defAct, logMode, kernel); err != nil {
			return nil, fmt.Errorf("syscalls[%d] %s", i, err)
		}
	}
	ok = true
	return f, nil
}

// addRule adds one profile rule. Errors start with the syscall name, so the
// caller's "syscalls[i]" prefix completes them.
func (p *Profile) addRule(f *seccomp.ScmpFilter, s *Syscalls, defAct seccomp.ScmpAction, logMode bool, kernel kernelVersion) error {
	if !s.applies(kernel) {
		return nil
	}
	act := p.action(s.Action, s.ErrnoRet, logMode)
	if act == defAct {
		// libseccomp refuses rules equal to the default; they change nothing.
		return nil
	}
	conds, err := s.conditions()
	if err != nil {
		return fmt.Errorf("%s: %w", s.label(), err)
	}
	for _, name := range s.allNames() {
		call, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			// A name this libseccomp does not know cannot be filtered on. That
			// is harmless when the default already denies it (the rule would
			// only allow or re-deny it); when the default is permissive the
			// rule was meant to deny, and silently dropping it would allow.
			if !permissiveAct(defAct) || permissiveAct(act) {
				continue
			}
			return fmt.Errorf("%q: unknown syscall: cannot deny it under a permissive defaultAction", name)
		}
		if len(conds) == 0 {
			if err := f.AddRule(call, act); err != nil {
				return fmt.Errorf("%q: add rule: %w", name, err)
			}
			continue
		}
		for _, c := range conds {
			if err := f.AddRuleConditional(call, act, c); err != nil {
				return fmt.Errorf("%q: add conditional rule: %w", name, err)
			}
		}
	}
	return nil
}

// conditions returns the rule's argument checks as libseccomp rules. Like
// runc: checks on distinct arguments form one rule (AND); several checks on
// the same argument become one rule each (OR), since libseccomp cannot AND
// two comparisons of one argument.
func (s *Syscalls) conditions() ([][]seccomp.ScmpCondition, error) {
	if len(s.Args) == 0 {
		return nil, nil
	}
	conds := make([]seccomp.ScmpCondition, 0, len(s.Args))
	perIndex := map[uint]int{}
	for j, a := range s.Args {
		c, err := a.condition()
		if err != nil {
			return nil, fmt.Errorf("args[%d]: %w", j, err)
		}
		conds = append(conds, c)
		perIndex[a.Index]++
	}
	for _, n := range perIndex {
		if n > 1 {
			out := make([][]seccomp.ScmpCondition, len(conds))
			for j, c := range conds {
				out[j] = []seccomp.ScmpCondition{c}
			}
			return out, nil
		}
	}
	return [][]seccomp.ScmpCondition{conds}, nil
}

func permissiveAct(a seccomp.ScmpAction) bool {
	return a == seccomp.ActAllow || a == seccomp.ActLog
}

var scmpOps = map[string]seccomp.ScmpCompareOp{
	"SCMP_CMP_NE": seccomp.CompareNotEqual, "SCMP_CMP_LT": seccomp.CompareLess,
	"SCMP_CMP_LE": seccomp.CompareLessOrEqual, "SCMP_CMP_EQ": seccomp.CompareEqual,
	"SCMP_CMP_GE": seccomp.CompareGreaterEqual, "SCMP_CMP_GT": seccomp.CompareGreater,
	"SCMP_CMP_MASKED_EQ": seccomp.CompareMaskedEqual,
}

func (a Arg) condition() (seccomp.ScmpCondition, error) {
	op, ok := scmpOps[a.Op]
	if !ok {
		return seccomp.ScmpCondition{}, fmt.Errorf("unknown op %q", a.Op)
	}
	if op == seccomp.CompareMaskedEqual {
		return seccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
	}
	return seccomp.MakeCondition(a.Index, op, a.Value)
}

// applies reports whether the rule is in force for this process: native
// architecture, no capabilities held, running kernel version.
func (s *Syscalls) applies(kernel kernelVersion) bool {
	in, ex := s.Includes, s.Excludes
	if len(in.Arches) > 0 && !hasArch(in.Arches, nativeArch) {
		return false
	}
	if len(in.Caps) > 0 {
		return false // the agent holds no capability
	}
	if in.MinKernel != "" {
		v, err := parseKernelVersion(in.MinKernel)
		if err != nil || !kernel.atLeast(v) {
			return false
		}
	}
	if len(ex.Arches) > 0 && hasArch(ex.Arches, nativeArch) {
		return false
	}
	// ex.Caps never excludes: the agent holds none of them.
	if ex.MinKernel != "" {
		if v, err := parseKernelVersion(ex.MinKernel); err == nil && kernel.atLeast(v) {
			return false
		}
	}
	return true
}

func hasArch(list []string, canonical string) bool {
	for _, a := range list {
		if archNames[a] == canonical {
			return true
		}
	}
	return false
}

// action maps a validated action name to libseccomp's; in log mode every
// denying action becomes SCMP_ACT_LOG.
func (p *Profile) action(name string, errnoRet *uint, logMode bool) seccomp.ScmpAction {
	if logMode && !isPermissive(name) {
		return seccomp.ActLog
	}
	switch name {
	case actAllow:
		return seccomp.ActAllow
	case actLog:
		return seccomp.ActLog
	case actKill, actKillThread:
		return seccomp.ActKillThread
	case actKillProcess:
		return seccomp.ActKillProcess
	case actTrap:
		return seccomp.ActTrap
	default: // actErrno; validate admits nothing else
		code := uint(unix.EPERM)
		if errnoRet != nil {
			code = *errnoRet
		}
		return seccomp.ActErrno.SetReturnCode(int16(code))
	}
}

// currentKernel is the running kernel's version; an unreadable one counts as
// 0.0, so minKernel-gated allow rules stay off (fail closed).
func currentKernel() kernelVersion {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return kernelVersion{}
	}
	v, err := parseKernelVersion(unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		return kernelVersion{}
	}
	return v
}
