package main

// Subcommands recognised as the first non-flag argument (unless it follows
// "--", which always starts the agent's command). Every file that names
// one uses these constants.
const (
	// subConfig and subVersion take no arguments of their own; flags may
	// follow them.
	subConfig  = "config"
	subVersion = "version"
	// subGenerate takes its own arguments, returned unparsed as agentArgv
	// (see generate.go).
	subGenerate = "generate"
	// The operator's tools (tools.go, package ops). Like generate, each
	// takes its own arguments after its name.
	subCheck   = "check"
	subLint    = "lint"
	subSuggest = "suggest"
)

// takesOwnArgs reports whether sub is a subcommand whose arguments are
// its own, returned unparsed as agentArgv: generate and the operator's
// tools.
func takesOwnArgs(sub string) bool {
	switch sub {
	case subGenerate, subCheck, subLint, subSuggest:
		return true
	}
	return false
}

// takesNoArgs reports whether sub is a subcommand that takes no arguments,
// only the supervisor's flags.
func takesNoArgs(sub string) bool {
	return sub == subConfig || sub == subVersion
}
