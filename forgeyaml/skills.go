package forgeyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/jail"
)

// maxSkillBytes bounds one SKILL.md; skills are prose of a few KiB.
const maxSkillBytes = 1 << 20

// skills reads the requires.bins of the project's skills: the file
// skills.path names (Forge's default SKILL.md, when it exists) and every
// skills/*/SKILL.md, as Forge's build copies them. A skill's frontmatter
// is Forge's to validate; only metadata.forge.requires.bins is read.
func (p *problems) skills(n *yaml.Node, dir string, readFile func(string) ([]byte, error)) []Bin {
	f := p.fields(n, "skills", nil)
	var files []string
	if v, ok := p.str(f["path"].val, "skills.path"); ok && v != "" {
		files = append(files, v)
	} else if _, err := os.Stat(filepath.Join(dir, "SKILL.md")); err == nil {
		files = append(files, "SKILL.md")
	}
	if dirs, err := filepath.Glob(filepath.Join(dir, "skills", "*", "SKILL.md")); err == nil {
		sort.Strings(dirs)
		for _, d := range dirs {
			rel, _ := filepath.Rel(dir, d)
			files = append(files, rel)
		}
	}
	var bins []Bin
	for _, rel := range files {
		data, err := readFile(filepath.Join(dir, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist) && len(f) > 0:
			p.at(f["path"].val, "skills.path", "%s: no such file", rel)
			continue
		case err != nil:
			p.errs = append(p.errs, fmt.Errorf("%s: %w", rel, err))
			continue
		}
		bins = append(bins, skillBins(&problems{file: rel}, p, data)...)
	}
	return bins
}

// skillBins reads metadata.forge.requires.bins (and requires.capabilities)
// from a SKILL.md's YAML frontmatter (between "---" lines at the top).
// Entries are names or mappings with a name, as Forge's BinRequirement
// accepts.
func skillBins(sp, p *problems, data []byte) []Bin {
	front, ok := frontmatter(data)
	if !ok {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(front, &doc); err != nil {
		p.errs = append(p.errs, yamlError(sp.file, err))
		return nil
	}
	if len(doc.Content) == 0 {
		return nil
	}
	shift(&doc, 1) // the frontmatter starts on the file's second line
	top := sp.fields(doc.Content[0], "", nil)
	meta := sp.fields(top["metadata"].val, "metadata", nil)
	forge := sp.fields(meta["forge"].val, "metadata.forge", nil)
	req := sp.fields(forge["requires"].val, "metadata.forge.requires", nil)
	var bins []Bin
	for i, b := range sp.seq(req["bins"].val, "metadata.forge.requires.bins") {
		key := fmt.Sprintf("metadata.forge.requires.bins[%d]", i)
		name := b.Value
		if b.Kind == yaml.MappingNode {
			name, _ = sp.str(sp.fields(b, key, nil)["name"].val, key+".name")
		} else if b.Kind != yaml.ScalarNode {
			sp.at(b, key, "must be a name or a mapping with a name")
			continue
		}
		if name == "" {
			sp.at(b, key, "a bin requirement needs a name")
			continue
		}
		bins = append(bins, Bin{Name: name, Skill: sp.file})
	}
	// requires.capabilities: [browser] makes Forge's build install Chromium
	// (requirements_stage.go): the same requirement as the chromium bin.
	for _, it := range sp.strs(req["capabilities"].val, "metadata.forge.requires.capabilities") {
		if it.val == capabilityBrowser {
			bins = append(bins, Bin{Name: "chromium", Skill: sp.file + " (capability browser)"})
		}
	}
	p.errs = append(p.errs, sp.errs...)
	return bins
}

// capabilityBrowser is Forge's skill capability for a headless browser.
const capabilityBrowser = "browser"

// readSkill reads one SKILL.md: a regular file of at most maxSkillBytes
// (a symlink to /dev/zero must not hang the build).
func readSkill(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSkillBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSkillBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxSkillBytes)
	}
	return data, nil
}

func frontmatter(data []byte) ([]byte, bool) {
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	if !bytes.HasPrefix(data, []byte("---\n")) {
		return nil, false
	}
	rest := data[4:]
	end := bytes.Index(rest, []byte("\n---"))
	if end < 0 {
		return nil, false
	}
	return rest[:end+1], true
}

// shift moves every node's line by n, so positions are the file's.
func shift(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shift(c, by)
	}
}

// checkRequirements refuses a skill whose program needs a requirement that
// weakens the jail (ptrace for a debugger) unless the project names that
// requirement itself: the risk must be a decision, not a side effect.
func (p *problems) checkRequirements(proj *Project) {
	for _, b := range proj.Bins {
		r, ok := deploy.RequirementForBin(b.Name)
		if !ok || !r.Explicit || contains(proj.Supervisor.Seccomp.Requires, r.Name) {
			continue
		}
		p.errs = append(p.errs, &Error{File: b.Skill, Key: "metadata.forge.requires.bins",
			Msg: fmt.Sprintf("%s needs the %q seccomp requirement (%s); add %q to supervisor.seccomp.requires in %s to accept that risk",
				b.Name, r.Name, strings.Join(r.Syscalls, ", "), r.Name, p.file)})
	}
}

// SeccompWidening is what the project adds to the built-in profile: the
// requirements it names, those its skills' programs imply, and its extra
// syscalls, each with the reason it is there.
func (proj *Project) SeccompWidening() deploy.Widening {
	why := map[string][]string{}
	for _, name := range proj.Supervisor.Seccomp.Requires {
		why[name] = append(why[name], "supervisor.seccomp.requires")
	}
	for _, b := range proj.Bins {
		if r, ok := deploy.RequirementForBin(b.Name); ok {
			why[r.Name] = append(why[r.Name], b.Skill+" requires "+b.Name)
		}
	}
	var w deploy.Widening
	for _, r := range deploy.Requirements {
		if reasons, ok := why[r.Name]; ok {
			w.Requires = append(w.Requires, deploy.NeededBy{Name: r.Name, Why: strings.Join(dedupInOrder(reasons), "; ")})
		}
	}
	w.Syscalls = proj.Supervisor.Seccomp.Syscalls
	return w
}

// SeccompBase is the profile the widening applies to: the built-in one, or
// supervisor.seccomp.profile.
func (proj *Project) SeccompBase() (*jail.Profile, error) {
	if proj.Supervisor.Seccomp.Profile == "" {
		return jail.DefaultProfile(), nil
	}
	path := proj.Supervisor.Seccomp.Profile
	if !filepath.IsAbs(path) {
		path = filepath.Join(proj.Dir, path)
	}
	return jail.LoadProfile(path)
}

// shellMeta are characters whose meaning needs a shell; an entrypoint with
// them cannot be split into argv without one.
const shellMeta = "\"'`$\\|&;<>()*?[]{}~#"

// AgentCommand is the agent's argv: supervisor.command, else the
// entrypoint split on spaces (nil when there is neither, as for
// framework "forge").
func (proj *Project) AgentCommand() ([]string, error) {
	if len(proj.Supervisor.Command) > 0 {
		return proj.Supervisor.Command, nil
	}
	if proj.Entrypoint == "" {
		return nil, nil
	}
	if strings.ContainsAny(proj.Entrypoint, shellMeta) {
		return nil, fmt.Errorf("%s: entrypoint %q needs a shell to split into words; give supervisor.command as a list instead", proj.File, proj.Entrypoint)
	}
	return strings.Fields(proj.Entrypoint), nil
}

func emptyProfile() *jail.Profile { return &jail.Profile{} }
