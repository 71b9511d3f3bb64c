package policy

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Process is the identity of the agent process that opened a connection
// or asked a DNS question, as a Rego policy sees it in input.process. The
// supervisor looks it up only when the loaded policy reads input.process
// (NeedsProcess) or the audit asks for it.
type Process struct {
	PID       int
	Exe       string   // readlink /proc/PID/exe; "" when the owner is unknown
	Cmdline   []string // the process can rewrite it: never trust it alone
	UID       uint32
	Ancestors []string // executables of the parent chain, nearest first, up to the agent's first process
	// Unknown is why the owner could not be identified ("" when it was):
	// procid's reason, such as "owner_exited".
	Unknown string
}

// Known reports whether p identifies a process.
func (p *Process) Known() bool { return p != nil && p.Unknown == "" && p.Exe != "" }

// ReasonProcessUnknown denies a question to a policy that reads
// input.process when the asking process could not be identified (it
// exited before the lookup, or identity was not looked up): a decision
// that needs identity fails closed. The rule says why ("process:owner_exited").
const ReasonProcessUnknown = "process_unknown"

// NeedsProcess reports whether the policy reads input.process, so the
// caller must look the process up before asking. Only a Rego policy can;
// the JSON allowlist has no process scope.
func (p *Policy) NeedsProcess() bool { return p != nil && p.rego != nil && p.rego.needsProcess }

// CheckNameFor is CheckName asked on behalf of proc (nil: not looked up).
// The DNS proxy asks it for each query when identity is on.
func (p *Policy) CheckNameFor(name string, port uint16, proc *Process) Verdict {
	if p == nil {
		return Verdict{Reason: ReasonNoPolicy}
	}
	n, err := NormalizeName(name)
	if err != nil {
		return Verdict{Reason: nameErrorReason(err)}
	}
	return p.checkNormalized(n, port, proc)
}

// processKey carries a Process in a context.
type processKey struct{}

// WithProcess returns ctx carrying proc. DecideFor passes it to its
// Resolver, so that a fresh lookup the resolver makes on the decision's
// behalf (the DNS proxy asks the policy before it resolves) is asked for
// the same process.
func WithProcess(ctx context.Context, proc *Process) context.Context {
	if proc == nil {
		return ctx
	}
	return context.WithValue(ctx, processKey{}, proc)
}

// ProcessFrom returns the Process WithProcess put in ctx, or nil.
func ProcessFrom(ctx context.Context) *Process {
	proc, _ := ctx.Value(processKey{}).(*Process)
	return proc
}

// regoInputProcess is the input key of the process object.
const regoInputProcess = "process"

// readsProcess reports whether the compiled module can read
// input.process: any reference to input whose second term is not a
// constant naming one of the other input fields (kind, name, ip, port).
// A bare "input" or input[x] with a variable x may reach process too, so
// it counts: looking identity up when not needed only costs time.
func readsProcess(mod *ast.Module) bool {
	other := map[string]bool{"kind": true, "name": true, "ip": true, "port": true}
	found := false
	var visit func(x any) bool
	visit = func(x any) bool {
		if found {
			return true
		}
		switch x := x.(type) {
		case ast.Ref:
			if x[0].Equal(ast.InputRootDocument) {
				s, ok := ast.String(""), false
				if len(x) > 1 {
					s, ok = x[1].Value.(ast.String)
				}
				if !ok || !other[string(s)] {
					found = true
					return true
				}
			}
			// The head is the document; only the other terms can hold
			// further references (input[input.kind]).
			for _, t := range x[1:] {
				ast.NewGenericVisitor(visit).Walk(t)
			}
			return true
		case ast.Var:
			// "input" as a value rather than a reference's head (f(input)).
			if x.Equal(ast.InputRootDocument.Value) {
				found = true
			}
		}
		return found
	}
	ast.NewGenericVisitor(visit).Walk(mod)
	return found
}

// processTerm renders proc as input.process. An unknown process is
// {pid: 0, exe: "", ...} plus "unknown": its reason.
func processTerm(proc *Process) *ast.Term {
	cmd := make([]*ast.Term, len(proc.Cmdline))
	for i, a := range proc.Cmdline {
		cmd[i] = ast.StringTerm(a)
	}
	anc := make([]*ast.Term, len(proc.Ancestors))
	for i, a := range proc.Ancestors {
		anc[i] = ast.StringTerm(a)
	}
	return ast.ObjectTerm(
		[2]*ast.Term{ast.InternedTerm("pid"), ast.IntNumberTerm(proc.PID)},
		[2]*ast.Term{ast.InternedTerm("exe"), ast.StringTerm(proc.Exe)},
		[2]*ast.Term{ast.InternedTerm("cmdline"), ast.ArrayTerm(cmd...)},
		[2]*ast.Term{ast.InternedTerm("uid"), ast.IntNumberTerm(int(proc.UID))},
		[2]*ast.Term{ast.InternedTerm("ancestors"), ast.ArrayTerm(anc...)},
		[2]*ast.Term{ast.InternedTerm("unknown"), ast.StringTerm(proc.Unknown)},
	)
}

// regoAsker asks the engine's decision on behalf of one process: every
// question of one Decide or CheckNameFor goes through it, so each carries
// input.process and each fails closed when the policy needs identity and
// has none.
type regoAsker struct {
	e    *regoEngine
	proc *Process
}

func (e *regoEngine) askingFor(proc *Process) regoAsker { return regoAsker{e: e, proc: proc} }

func (a regoAsker) decide(ctx context.Context, kind, name, ip string, port uint16) Verdict {
	if a.e.needsProcess && !a.proc.Known() {
		why := "not_looked_up"
		if a.proc != nil && a.proc.Unknown != "" {
			why = a.proc.Unknown
		}
		return Verdict{Reason: ReasonProcessUnknown, Rule: "process:" + why}
	}
	return a.e.decideAs(ctx, kind, name, ip, port, a.proc)
}
