package forgeyaml

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/forge/forge-supervisor/deploy"
)

// Supervisor is the supervisor: section: how forge-supervisor wraps and
// runs this agent.
type Supervisor struct {
	// Enabled is false only when the section says so; generate and the
	// runtime then refuse, since the project opted out of the supervisor.
	Enabled bool
	// BaseImage is the agent's own image, which the Dockerfile wraps.
	BaseImage string
	// Command overrides the agent's argv (default: entrypoint split on
	// spaces).
	Command []string
	// Settings are the supervisor settings the section sets, in file order,
	// as the text the supervisor parses (lists joined with ",").
	Settings []Setting
	// InboundPorts and AllowedLocalPorts are also in Settings; typed here
	// for the manifests.
	InboundPorts, AllowedLocalPorts []uint16
	Seccomp                         Seccomp
}

// Setting is one supervisor setting from forge.yaml.
type Setting struct {
	// Key is the flag name with "_" for "-" (proxy_port).
	Key, Value string
	// Source says where it came from, for error messages: "forge.yaml:12".
	Source string
}

// Seccomp is supervisor.seccomp: the profile the agent's jail loads.
type Seccomp struct {
	// Profile is "" for the built-in profile, else an OCI profile file
	// (resolved against the forge.yaml's directory) to widen instead.
	Profile string
	// Requires are requirement names from deploy.Requirements.
	Requires []string
	// Syscalls are extra syscall names.
	Syscalls []string
}

// Keys this package types itself.
const (
	keyEnabled     = "enabled"
	keyBaseImage   = "base_image"
	keyCommand     = "command"
	keySeccomp     = "seccomp"
	keyInbound     = "inbound_ports"
	keyLocal       = "allowed_local_ports"
	keyProxyPort   = "proxy_port"
	keyDNSPort     = "dns_port"
	keyHealthPort  = "health_port"
	keyAgentUID    = "agent_uid"
	keyAgentGID    = "agent_gid"
	keyPolicyPath  = "policy_path"
	keySeccompPath = "seccomp_path"
)

// maxImageRefSize bounds base_image: registries cap repository names at
// 255 bytes and tags at 128.
const maxImageRefSize = 512

// ownKeys are typed here whatever the caller's settings are.
var ownKeys = []string{keyEnabled, keyBaseImage, keyCommand, keySeccomp, keyInbound, keyLocal,
	keyProxyPort, keyDNSPort, keyHealthPort, keyAgentUID, keyAgentGID}

func (p *problems) supervisor(n *yaml.Node, o Options) Supervisor {
	s := Supervisor{Enabled: true}
	known := append(append([]string(nil), ownKeys...), o.SettingKeys...)
	known = append(known, keyPolicyPath) // known, to refuse it with a reason
	f := p.fields(n, keySupervisor, known)
	path := func(k string) string { return keySupervisor + "." + k }

	if b := p.boolean(f[keyEnabled].val, path(keyEnabled)); b != nil {
		s.Enabled = *b
	}
	if fl, ok := f[keyPolicyPath]; ok {
		p.at(fl.key, path(keyPolicyPath), "the egress: section of this file is the policy; remove supervisor.policy_path")
	}
	if v, ok := p.str(f[keyBaseImage].val, path(keyBaseImage)); ok {
		if v == "" || len(v) > maxImageRefSize || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
			p.at(f[keyBaseImage].val, path(keyBaseImage), "%q is not an image reference", v)
		} else {
			s.BaseImage = v
		}
	}
	for _, it := range p.strs(f[keyCommand].val, path(keyCommand)) {
		s.Command = append(s.Command, it.val)
	}
	if fl, ok := f[keyCommand]; ok && len(s.Command) == 0 && fl.val.Kind == yaml.SequenceNode {
		p.at(fl.val, path(keyCommand), "must not be empty; leave it out to run the entrypoint")
	}

	// A key typed here must also be a setting of this supervisor build, or
	// its value would be read and then go nowhere.
	if o.SettingKeys != nil {
		for _, k := range []string{keyInbound, keyLocal, keyProxyPort, keyDNSPort, keyHealthPort, keyAgentUID, keyAgentGID} {
			if fl, ok := f[k]; ok && !contains(o.SettingKeys, k) {
				p.at(fl.key, path(k), "this forge-supervisor has no %s setting; upgrade it or remove the key", k)
			}
		}
	}
	// Ports, typed for the checks that need their values.
	// A key whose typed check failed is not checked again as a setting, so
	// each mistake is reported once.
	reported := func(check func()) bool {
		before := len(p.errs)
		check()
		return len(p.errs) > before
	}
	bad := map[string]bool{}
	ports := map[string]uint16{}
	for _, k := range []string{keyProxyPort, keyDNSPort, keyHealthPort} {
		if fl, ok := f[k]; ok {
			if v, ok := p.port(fl.val, path(k)); ok {
				ports[k] = v
			} else {
				bad[k] = true
			}
		}
	}
	for _, k := range []string{keyAgentUID, keyAgentGID} {
		if fl, ok := f[k]; ok {
			bad[k] = reported(func() { p.id(fl.val, path(k)) })
		}
	}
	bad[keyInbound] = reported(func() { s.InboundPorts = p.portList(f[keyInbound].val, path(keyInbound)) })
	bad[keyLocal] = reported(func() { s.AllowedLocalPorts = p.portList(f[keyLocal].val, path(keyLocal)) })
	p.portConflicts(f, ports, s)
	s.Seccomp = p.seccomp(f[keySeccomp].val, path(keySeccomp))

	// Every setting, in file order, as text for the supervisor's parser.
	for i := 0; n != nil && n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		fl, ok := f[k]
		if !ok || k == keyEnabled || k == keyBaseImage || k == keyCommand || k == keySeccomp || k == keyPolicyPath {
			continue
		}
		if !contains(o.SettingKeys, k) || bad[k] {
			continue // not a setting of this build, or already reported
		}
		text, ok := p.settingText(fl.val, path(k))
		if !ok {
			continue
		}
		if k == keySeccompPath && text != "" && !filepath.IsAbs(text) {
			p.at(fl.val, path(k), "%q: the profile's path inside the container must be absolute", text)
			continue
		}
		if o.CheckSetting != nil {
			if err := o.CheckSetting(k, text); err != nil {
				p.at(fl.val, path(k), "%q: %v", text, err)
				continue
			}
		}
		s.Settings = append(s.Settings, Setting{Key: k, Value: text, Source: fmt.Sprintf("%s:%d", p.file, fl.val.Line)})
	}
	return s
}

// settingText is a setting's value as the supervisor's parser takes it: a
// scalar's text, or a list's items joined with ",".
func (p *problems) settingText(n *yaml.Node, path string) (string, bool) {
	switch n.Kind {
	case yaml.ScalarNode:
		if isNull(n) {
			p.at(n, path, "has no value; give one or leave the key out")
			return "", false
		}
		return n.Value, true
	case yaml.SequenceNode:
		items := p.strs(n, path)
		vals := make([]string, len(items))
		for i, it := range items {
			vals[i] = it.val
		}
		return strings.Join(vals, ","), true
	}
	p.at(n, path, "must be a value or a list, not %s", describe(n))
	return "", false
}

// id reads an agent uid/gid: numeric, never root, never (uid_t)-1.
func (p *problems) id(n *yaml.Node, path string) {
	v, err := strconv.ParseUint(n.Value, 10, 32)
	switch {
	case n.Kind != yaml.ScalarNode || n.Tag != tagInt || err != nil:
		p.at(n, path, "must be a numeric id 1..4294967294, not %s", describe(n))
	case v == 0:
		p.at(n, path, "must not be 0: the agent never runs as root")
	case v == 1<<32-1:
		p.at(n, path, "must not be 4294967295: that is (uid_t)-1, \"unchanged\" to the kernel")
	}
}

// portList reads a list of distinct ports.
func (p *problems) portList(n *yaml.Node, path string) []uint16 {
	var out []uint16
	seen := map[uint16]bool{}
	for i, e := range p.seq(n, path) {
		key := fmt.Sprintf("%s[%d]", path, i)
		v, ok := p.port(e, key)
		if !ok {
			continue
		}
		if seen[v] {
			p.at(e, key, "port %d is listed twice", v)
			continue
		}
		seen[v] = true
		out = append(out, v)
	}
	return out
}

// portConflicts refuses settings that cannot both hold: two supervisor
// listeners on one port, or an agent port that is a supervisor port. Ports
// the file leaves out take the supervisor's defaults.
func (p *problems) portConflicts(f map[string]field, ports map[string]uint16, s Supervisor) {
	eff := map[string]uint16{keyProxyPort: deploy.DefaultProxyPort, keyDNSPort: deploy.DefaultDNSPort, keyHealthPort: deploy.DefaultHealthPort}
	for k, v := range ports {
		eff[k] = v
	}
	order := []string{keyProxyPort, keyDNSPort, keyHealthPort}
	for i, a := range order {
		for _, b := range order[i+1:] {
			if eff[a] != eff[b] {
				continue
			}
			at := b
			if _, set := ports[b]; !set {
				at = a
			}
			if _, set := ports[at]; set {
				p.at(f[at].val, keySupervisor+"."+at, "%d is also %s; the supervisor's three ports must differ", eff[at], other(at, a, b))
			}
		}
	}
	for _, l := range []struct {
		key   string
		ports []uint16
	}{{keyInbound, s.InboundPorts}, {keyLocal, s.AllowedLocalPorts}} {
		for i, v := range l.ports {
			for _, k := range order {
				if eff[k] == v {
					p.at(f[l.key].val.Content[i], fmt.Sprintf("%s.%s[%d]", keySupervisor, l.key, i),
						"%d is the supervisor's %s; the agent cannot use it", v, k)
				}
			}
		}
	}
}

func other(at, a, b string) string {
	if at == a {
		return b
	}
	return a
}

// seccomp reads supervisor.seccomp.
func (p *problems) seccomp(n *yaml.Node, path string) Seccomp {
	f := p.fields(n, path, []string{"profile", "requires", "syscalls"})
	var s Seccomp
	if v, ok := p.str(f["profile"].val, path+".profile"); ok && v != "builtin" && v != "" {
		s.Profile = v
	}
	for _, it := range p.strs(f["requires"].val, path+".requires") {
		if _, ok := deploy.LookupRequirement(it.val); !ok {
			p.at(it.node, it.key, "unknown requirement %q%s", it.val, suggest(it.val, deploy.RequirementNames()))
			continue
		}
		if !contains(s.Requires, it.val) {
			s.Requires = append(s.Requires, it.val)
		}
	}
	for _, it := range p.strs(f["syscalls"].val, path+".syscalls") {
		if it.val == "" || strings.ContainsFunc(it.val, func(r rune) bool { return !(r == '_' || unicode.IsDigit(r) || (r >= 'a' && r <= 'z')) }) {
			p.at(it.node, it.key, "%q is not a syscall name (lowercase, like \"ptrace\")", it.val)
			continue
		}
		if _, err := deploy.Widen(emptyProfile(), deploy.Widening{Syscalls: []string{it.val}}); err != nil {
			p.at(it.node, it.key, "%q is not a syscall libseccomp knows", it.val)
			continue
		}
		s.Syscalls = append(s.Syscalls, it.val)
	}
	return s
}

// localEndpoints adds the ports of endpoints on localhost (an Ollama or a
// collector sidecar in the pod) to allowed_local_ports, which is how the
// supervisor lets the agent reach the pod's own listeners; Forge allows
// localhost always.
func (p *problems) localEndpoints(s *Supervisor, eps []endpoint, o Options) {
	var added []string
	source := ""
	for _, ep := range eps {
		if !ep.isLocal() || contains16(s.AllowedLocalPorts, ep.port) {
			continue
		}
		if o.SettingKeys != nil && !contains(o.SettingKeys, keyLocal) {
			p.at(ep.node, ep.key, "a localhost endpoint needs the allowed_local_ports setting, which this forge-supervisor lacks")
			return
		}
		s.AllowedLocalPorts = append(s.AllowedLocalPorts, ep.port)
		added = append(added, ep.key)
		if source == "" {
			source = fmt.Sprintf("%s:%d", p.file, ep.node.Line)
		}
	}
	if len(added) == 0 {
		return
	}
	text := make([]string, len(s.AllowedLocalPorts))
	for i, v := range s.AllowedLocalPorts {
		text[i] = strconv.Itoa(int(v))
	}
	for i := range s.Settings {
		if s.Settings[i].Key == keyLocal {
			s.Settings[i].Value = strings.Join(text, ",")
			s.Settings[i].Source += " and " + strings.Join(added, ", ")
			return
		}
	}
	s.Settings = append(s.Settings, Setting{Key: keyLocal, Value: strings.Join(text, ","), Source: source + " (" + strings.Join(added, ", ") + ")"})
}

func contains16(list []uint16, v uint16) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
