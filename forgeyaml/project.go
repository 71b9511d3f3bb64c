package forgeyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileBytes bounds what Load reads: a forge.yaml is a few KiB; 1 MiB
// refuses /dev/zero or a runaway file while leaving room for large
// allowlists.
const maxFileBytes = 1 << 20

// Project is what the supervisor takes from a Forge project: the effective
// egress allowlist, the agent's entrypoint, its skills' requirements and the
// supervisor: section.
type Project struct {
	// File is the forge.yaml as given; Dir is its directory, which relative
	// paths in it (skills, a seccomp profile) are resolved against.
	File, Dir string
	// Forge's own identity fields (required by Forge).
	AgentID, Version, Framework, Entrypoint string
	// Allowlist is the egress_allowlist.json Forge would write, plus the
	// rules Forge's file drops (allowed_tcp, allowed_private_cidrs,
	// allow_private_ips) and the ports of the endpoints Forge merges.
	Allowlist Allowlist
	// Supervisor is the supervisor: section.
	Supervisor Supervisor
	// Bins are the programs the project's skills require (requires.bins),
	// each with the skill file that declares it.
	Bins []Bin
}

// Bin is one program a skill requires.
type Bin struct {
	Name, Skill string
}

// Options say what the caller knows that this package does not.
type Options struct {
	// SettingKeys are the supervisor settings (beyond the keys this package
	// types itself) that the supervisor: section may set, spelt like the
	// flags with "_" for "-": "dns_rate", "idle_timeout".
	SettingKeys []string
	// CheckSetting validates one setting's text as the supervisor would
	// parse it; nil skips the check. Its error is reported at the key.
	CheckSetting func(key, text string) error
}

// IsForgeYAML reports whether path names a forge.yaml (by its extension),
// the way the supervisor decides between a Forge project, Rego and
// egress_allowlist.json.
func IsForgeYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// Load reads and validates the forge.yaml at path (and its skills).
func Load(path string, o Options) (*Project, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("forge.yaml: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("forge.yaml: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("forge.yaml: %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("forge.yaml: %s: read: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("forge.yaml: %s: larger than %d bytes", path, maxFileBytes)
	}
	return parse(path, filepath.Dir(path), data, o, readSkill)
}

// Parse validates forge.yaml content; name is the file name errors use and
// dir the directory skills are read from.
func Parse(name, dir string, data []byte, o Options) (*Project, error) {
	return parse(name, dir, data, o, readSkill)
}

// topLevel are the keys of Forge's ForgeConfig (forge-core/types) plus the
// supervisor's own section. Unknown keys are refused: a misspelt "egres:"
// would otherwise leave the agent with the default policy, unnoticed.
var topLevel = []string{
	"agent_id", "version", "framework", "entrypoint", "model", "tools", "builtin_tools",
	"channels", "registry", "egress", "skills", "memory", "secrets", "auth", "mcp",
	"schedules", "scheduler", "cors_origins", "package", "guardrails_path", "server",
	"observability", "security", keySupervisor,
}

const keySupervisor = "supervisor"

func parse(name, dir string, data []byte, o Options, readFile func(string) ([]byte, error)) (*Project, error) {
	p := &problems{file: name}
	root, err := decodeOne(data)
	if err != nil {
		p.errs = append(p.errs, yamlError(name, err))
		return nil, p.err()
	}
	top := p.fields(root, "", topLevel)
	proj := &Project{File: name, Dir: dir}
	for _, f := range []struct {
		key string
		dst *string
	}{{"agent_id", &proj.AgentID}, {"version", &proj.Version}, {"framework", &proj.Framework}, {"entrypoint", &proj.Entrypoint}} {
		*f.dst, _ = p.str(top[f.key].val, f.key)
	}
	// Forge's own required fields (types.ParseForgeConfig), so a file
	// the supervisor accepts is one Forge accepts too.
	if proj.AgentID == "" {
		p.at(root, "agent_id", "required (Forge refuses a project without it)")
	}
	if proj.Version == "" {
		p.at(root, "version", "required (Forge refuses a project without it)")
	}
	if proj.Entrypoint == "" && proj.Framework != "forge" {
		p.at(root, "entrypoint", `required unless framework is "forge" (Forge refuses a project without it)`)
	}
	endpoints := p.endpoints(top)
	tools := p.toolNames(top)
	proj.Allowlist = p.egress(top["egress"].val, endpoints, tools)
	proj.Supervisor = p.supervisor(top[keySupervisor].val, o)
	p.localEndpoints(&proj.Supervisor, endpoints, o)
	proj.Bins = p.skills(top["skills"].val, dir, readFile)
	p.checkRequirements(proj)
	if err := p.err(); err != nil {
		return nil, err
	}
	return proj, nil
}

// decodeOne parses exactly one YAML document.
func decodeOne(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file; a forge.yaml needs at least agent_id, version and entrypoint")
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("line %d: a second YAML document (---); a forge.yaml is one document", extra.Line)
	}
	if len(doc.Content) != 1 {
		return nil, errors.New("empty document")
	}
	return doc.Content[0], nil
}

// yamlError gives a syntax error the file name; yaml.v3's messages already
// carry "line N".
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return &Error{File: name, Msg: msg}
}

// toolNames are the names Forge infers tool domains from: tools[].name and
// builtin_tools.
func (p *problems) toolNames(top map[string]field) []string {
	var names []string
	for i, t := range p.seq(top["tools"].val, "tools") {
		key := fmt.Sprintf("tools[%d]", i)
		f := p.fields(t, key, nil)
		if n, ok := p.str(f["name"].val, key+".name"); ok {
			names = append(names, n)
		}
	}
	for _, it := range p.strs(top["builtin_tools"].val, "builtin_tools") {
		names = append(names, it.val)
	}
	return names
}
