package deploy

import (
	"fmt"
	"slices"
	"strings"

	seccomp "github.com/seccomp/libseccomp-golang"

	"github.com/forge/forge-supervisor/jail"
)

// Requirement is something an agent's skills need from the kernel that the
// built-in seccomp profile may not allow. docs/seccomp.md has the same
// table, and each row is proved by jail tests that run the program under
// the jail with and without the row's syscalls.
type Requirement struct {
	// Name is how forge.yaml names it (supervisor.seccomp.requires).
	Name string
	// Bins are the programs (a Forge skill's requires.bins) that imply it.
	Bins []string
	// Syscalls are what it adds to the built-in profile; none means the
	// built-in profile already runs it.
	Syscalls []string
	// Explicit requirements are never implied by a skill's bins alone: the
	// project must name them in supervisor.seccomp.requires, because their
	// syscalls weaken the jail. Risk says how, and goes into the profile.
	Explicit bool
	Risk     string
}

// ptraceRisk is what the debugger requirement gives away; it is written
// next to the syscalls in every profile that allows them.
const ptraceRisk = "RISK: ptrace and process_vm_readv/writev let the agent read and write the memory " +
	"(secrets included) of every process running as its uid and control them; the supervisor " +
	"(root) stays out of reach, since the agent has no capabilities and no_new_privs"

// Requirements is the table, in the order profiles list them.
var Requirements = []Requirement{
	{Name: "browser", Bins: []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"}},
	{Name: "git", Bins: []string{"git"}},
	{Name: "debugger", Bins: []string{"gdb", "strace", "ltrace", "lldb", "dlv"},
		Syscalls: []string{"ptrace", "process_vm_readv", "process_vm_writev"}, Explicit: true, Risk: ptraceRisk},
}

// RequirementNames lists the table's names, for messages.
func RequirementNames() []string {
	names := make([]string, len(Requirements))
	for i, r := range Requirements {
		names[i] = r.Name
	}
	return names
}

// LookupRequirement finds a requirement by name.
func LookupRequirement(name string) (Requirement, bool) {
	for _, r := range Requirements {
		if r.Name == name {
			return r, true
		}
	}
	return Requirement{}, false
}

// RequirementForBin finds the requirement a program implies, if any.
func RequirementForBin(bin string) (Requirement, bool) {
	for _, r := range Requirements {
		if slices.Contains(r.Bins, bin) {
			return r, true
		}
	}
	return Requirement{}, false
}

// riskySyscalls are additions that need a risk comment wherever they come
// from (a requirement or supervisor.seccomp.syscalls).
var riskySyscalls = map[string]string{
	"ptrace": ptraceRisk, "process_vm_readv": ptraceRisk, "process_vm_writev": ptraceRisk,
}

// Widening says what to add to a profile: requirement names (each with why
// it is there, e.g. the skill that needs it) and extra syscall names.
type Widening struct {
	Requires []NeededBy
	Syscalls []string
}

// NeededBy is one requirement and who needs it.
type NeededBy struct {
	Name string
	Why  string
}

// Widen returns base plus one allow rule per requirement that adds
// syscalls and one for the extra syscalls, each with a comment saying why
// (and, for ptrace and its kin, the risk). Syscalls base already allows
// unconditionally are not repeated. Unknown names are errors.
func Widen(base *jail.Profile, w Widening) (*jail.Profile, error) {
	p := *base
	p.Syscalls = append([]jail.Syscalls(nil), base.Syscalls...)
	allowed := map[string]bool{}
	for _, s := range base.Syscalls {
		if s.Action == "SCMP_ACT_ALLOW" && len(s.Args) == 0 && len(s.Includes.Caps) == 0 && len(s.Includes.Arches) == 0 && s.Includes.MinKernel == "" {
			for _, n := range s.Names {
				allowed[n] = true
			}
			if s.Name != "" {
				allowed[s.Name] = true
			}
		}
	}
	add := func(names []string, comment string) error {
		var fresh []string
		for _, n := range names {
			if _, err := seccomp.GetSyscallFromName(n); err != nil {
				return fmt.Errorf("deploy: seccomp: %q is not a syscall libseccomp knows", n)
			}
			if !allowed[n] {
				allowed[n] = true
				fresh = append(fresh, n)
			}
		}
		if len(fresh) > 0 {
			p.Syscalls = append(p.Syscalls, jail.Syscalls{Names: fresh, Action: "SCMP_ACT_ALLOW", Comment: comment})
		}
		return nil
	}
	for _, nb := range w.Requires {
		r, ok := LookupRequirement(nb.Name)
		if !ok {
			return nil, fmt.Errorf("deploy: seccomp: unknown requirement %q; known: %s", nb.Name, strings.Join(RequirementNames(), ", "))
		}
		if len(r.Syscalls) == 0 {
			p.Comment += fmt.Sprintf("; requirement %s (%s) needs no addition", r.Name, nb.Why)
			continue
		}
		comment := fmt.Sprintf("requirement %s (%s)", r.Name, nb.Why)
		if r.Risk != "" {
			comment += ". " + r.Risk
		}
		if err := add(r.Syscalls, comment); err != nil {
			return nil, err
		}
	}
	if len(w.Syscalls) > 0 {
		comment := "added by supervisor.seccomp.syscalls"
		risks := map[string]bool{}
		for _, n := range w.Syscalls {
			if r, ok := riskySyscalls[n]; ok && !risks[r] {
				risks[r] = true
				comment += ". " + r
			}
		}
		if err := add(w.Syscalls, comment); err != nil {
			return nil, err
		}
	}
	return &p, nil
}
