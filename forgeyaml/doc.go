// Package forgeyaml reads a Forge project's forge.yaml the way Forge types
// it (forge-core/types) and resolves what the supervisor needs from it:
//
//   - the effective egress allowlist, as Forge's build resolves it
//     (profile and mode defaults, tool domains, capability bundles, the
//     auth, MCP, OTel and model endpoints Forge merges), plus what Forge's
//     egress_allowlist.json drops: allowed_tcp, allowed_private_cidrs,
//     allow_private_ips and the endpoints' ports;
//   - the agent's command (entrypoint or supervisor.command);
//   - the programs its skills require (SKILL.md frontmatter), which map to
//     seccomp requirements (deploy.Requirements);
//   - the supervisor: section: settings as the text the supervisor's own
//     parsers read, the base image to wrap, the seccomp choice.
//
// The file is walked with yaml.v3's node API, so every mistake is reported
// with file, line, column and key, all of them in one error. Allowlist
// entries are checked by the policy package's loader itself. What Forge
// would silently ignore and that changes an agent's policy (an unknown key,
// an unknown capability bundle, an unreachable endpoint URL) is an error
// here; docs/forge-yaml.md lists the differences.
package forgeyaml
