// Package ops holds the operator's tools behind the supervisor's
// subcommands: check (what would the policy decide for this connection or
// query), lint (what in this policy file is wrong, inert, redundant or
// broader than meant) and suggest (which allowlist additions would have
// allowed what a dry run denied, as a patch to the policy file).
//
// Each tool writes its report to an io.Writer and returns the process's
// exit status, so main only parses flags and golden tests compare bytes.
package ops

// Exit statuses shared by the tools.
const (
	ExitOK    = 0 // check: allowed; lint: no errors; suggest: done
	ExitFail  = 1 // check: denied; lint: errors found
	ExitUsage = 2 // bad flags, unreadable input
)
