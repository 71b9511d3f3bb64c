package jail

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// DefaultSeccompPath is where the supervisor looks for a user profile. Unlike
// any other path, its absence is not an error: the built-in profile applies.
const DefaultSeccompPath = "/etc/forge/seccomp.json"

// maxProfileBytes bounds a profile file: Docker's default is ~20 KiB, so
// 1 MiB is fifty times that and still stops a runaway file early.
const maxProfileBytes = 1 << 20

// Profile is a Docker/OCI seccomp profile as written in JSON.
type Profile struct {
	Comment         string     `json:"comment,omitempty"`
	DefaultAction   string     `json:"defaultAction"`
	DefaultErrnoRet *uint      `json:"defaultErrnoRet,omitempty"`
	Architectures   []string   `json:"architectures,omitempty"`
	ArchMap         []ArchMap  `json:"archMap,omitempty"`
	Flags           []string   `json:"flags,omitempty"`
	ListenerPath    string     `json:"listenerPath,omitempty"`
	Syscalls        []Syscalls `json:"syscalls"`
}

// ArchMap is Docker's architecture entry: a main architecture and the
// sub-architectures it can run.
type ArchMap struct {
	Architecture     string   `json:"architecture"`
	SubArchitectures []string `json:"subArchitectures"`
}

// Syscalls is one rule: an action for a set of syscalls, optionally only when
// the arguments match and only under the Includes/Excludes conditions.
type Syscalls struct {
	Name     string   `json:"name,omitempty"` // Docker's pre-1.13 single-name form
	Names    []string `json:"names,omitempty"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Args     []Arg    `json:"args,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Includes Filter   `json:"includes,omitempty"`
	Excludes Filter   `json:"excludes,omitempty"`
}

// Arg compares one syscall argument. For SCMP_CMP_MASKED_EQ, Value is the
// mask and ValueTwo the value the masked argument must equal.
type Arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// Filter is Docker's includes/excludes: a rule applies depending on the
// architecture, the capabilities the process holds and the kernel version.
type Filter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// ResolveProfile returns the profile the agent runs under: the built-in one
// when path is "" or is DefaultSeccompPath and that file does not exist,
// otherwise the parsed and validated file at path.
func ResolveProfile(path string) (*Profile, error) {
	if path == "" {
		return DefaultProfile(), nil
	}
	p, err := LoadProfile(path)
	if path == DefaultSeccompPath && errors.Is(err, fs.ErrNotExist) {
		return DefaultProfile(), nil
	}
	return p, err
}

// CheckProfile resolves the profile at path (see ResolveProfile) and compiles
// it into a seccomp filter without loading it, so a bad profile stops the
// supervisor at startup rather than in the jailed child.
func CheckProfile(path string) error {
	p, err := ResolveProfile(path)
	if err != nil {
		return err
	}
	if err := p.check(false); err != nil {
		return fmt.Errorf("seccomp profile %s: %w", profileName(path), err)
	}
	return nil
}

// profileName names a profile in errors: its path, or the built-in one.
func profileName(path string) string {
	if path == "" {
		return "(built-in)"
	}
	return path
}

// LoadProfile reads and validates a Docker/OCI seccomp profile. Errors name
// the file and, for a bad rule, its index, syscall name and the problem.
func LoadProfile(path string) (*Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: read: %w", path, err)
	}
	if len(data) > maxProfileBytes {
		return nil, fmt.Errorf("seccomp profile %s: larger than %d bytes", path, maxProfileBytes)
	}
	p, err := ParseProfile(data)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	return p, nil
}

// ParseProfile decodes and validates profile JSON. Unknown fields are errors:
// a misspelt key would otherwise silently weaken the filter.
func ParseProfile(data []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode JSON: trailing data after the profile object")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// validate checks everything that can be checked without libseccomp.
func (p *Profile) validate() error {
	if p.DefaultAction == "" {
		return errors.New("defaultAction: missing")
	}
	if err := checkAction(p.DefaultAction, p.DefaultErrnoRet); err != nil {
		return fmt.Errorf("defaultAction: %w", err)
	}
	if p.ListenerPath != "" {
		return errors.New("listenerPath: seccomp user notification is not supported")
	}
	for i, f := range p.Flags {
		if _, ok := knownFlags[f]; !ok {
			return fmt.Errorf("flags[%d] %q: unknown flag", i, f)
		}
	}
	if err := p.validateArches(); err != nil {
		return err
	}
	if len(p.Syscalls) == 0 && !isPermissive(p.DefaultAction) {
		// A deny-everything filter cannot even execve the agent.
		return errors.New("syscalls: empty with a denying defaultAction: the agent could not start")
	}
	for i := range p.Syscalls {
		if err := p.Syscalls[i].validate(); err != nil {
			return fmt.Errorf("syscalls[%d] %s: %w", i, p.Syscalls[i].label(), err)
		}
	}
	return nil
}

func (p *Profile) validateArches() error {
	listed := false
	native := false
	for i, a := range p.Architectures {
		if _, ok := archNames[a]; !ok {
			return fmt.Errorf("architectures[%d] %q: unknown architecture", i, a)
		}
		listed = true
		native = native || archNames[a] == nativeArch
	}
	for i, m := range p.ArchMap {
		if _, ok := archNames[m.Architecture]; !ok {
			return fmt.Errorf("archMap[%d] %q: unknown architecture", i, m.Architecture)
		}
		for j, s := range m.SubArchitectures {
			if _, ok := archNames[s]; !ok {
				return fmt.Errorf("archMap[%d].subArchitectures[%d] %q: unknown architecture", i, j, s)
			}
		}
		listed = true
		native = native || archNames[m.Architecture] == nativeArch
	}
	if listed && !native {
		return fmt.Errorf("architectures: %s is not listed, so the profile does not describe this machine", nativeArch)
	}
	return nil
}

// label names a rule in errors: its first syscall name, or "(no names)".
func (s *Syscalls) label() string {
	names := s.allNames()
	switch len(names) {
	case 0:
		return "(no names)"
	case 1:
		return strconv.Quote(names[0])
	default:
		return strconv.Quote(names[0]) + " (+" + strconv.Itoa(len(names)-1) + " more)"
	}
}

func (s *Syscalls) allNames() []string {
	if s.Name == "" {
		return s.Names
	}
	return append([]string{s.Name}, s.Names...)
}

func (s *Syscalls) validate() error {
	names := s.allNames()
	if len(names) == 0 {
		return errors.New("no syscall names")
	}
	for j, n := range names {
		if n == "" || strings.TrimSpace(n) != n {
			return fmt.Errorf("names[%d] %q: not a syscall name", j, n)
		}
	}
	if s.Action == "" {
		return errors.New("action: missing")
	}
	if err := checkAction(s.Action, s.ErrnoRet); err != nil {
		return fmt.Errorf("action: %w", err)
	}
	for j, a := range s.Args {
		if a.Index > maxArgIndex {
			return fmt.Errorf("args[%d]: index %d out of range 0..%d", j, a.Index, maxArgIndex)
		}
		if _, ok := compareOps[a.Op]; !ok {
			return fmt.Errorf("args[%d]: unknown op %q", j, a.Op)
		}
	}
	for _, f := range []struct {
		what string
		f    Filter
	}{{"includes", s.Includes}, {"excludes", s.Excludes}} {
		for j, c := range f.f.Caps {
			if _, ok := capNames[c]; !ok {
				return fmt.Errorf("%s.caps[%d]: unknown capability %q", f.what, j, c)
			}
		}
		for j, a := range f.f.Arches {
			if _, ok := archNames[a]; !ok {
				return fmt.Errorf("%s.arches[%d]: unknown architecture %q", f.what, j, a)
			}
		}
		if f.f.MinKernel != "" {
			if _, err := parseKernelVersion(f.f.MinKernel); err != nil {
				return fmt.Errorf("%s.minKernel: %w", f.what, err)
			}
		}
	}
	return nil
}

// maxArgIndex is the last syscall argument seccomp can inspect (six args).
const maxArgIndex = 5

// maxErrno is the kernel's MAX_ERRNO: larger return values are not errors.
const maxErrno = 4095

func checkAction(action string, errnoRet *uint) error {
	if _, ok := actionNames[action]; !ok {
		return fmt.Errorf("unknown or unsupported action %q", action)
	}
	if errnoRet == nil {
		return nil
	}
	if action != actErrno {
		return fmt.Errorf("errnoRet is only meaningful with %s, not %s", actErrno, action)
	}
	if *errnoRet == 0 {
		return errors.New("errnoRet 0 would make a denied call look successful")
	}
	if *errnoRet > maxErrno {
		return fmt.Errorf("errnoRet %d is above the kernel's MAX_ERRNO %d", *errnoRet, maxErrno)
	}
	return nil
}

func isPermissive(action string) bool {
	return action == actAllow || action == actLog
}

// kernelVersion is major and minor of a Linux release.
type kernelVersion struct{ major, minor int }

func (a kernelVersion) atLeast(b kernelVersion) bool {
	return a.major > b.major || (a.major == b.major && a.minor >= b.minor)
}

// parseKernelVersion reads "MAJOR.MINOR" with anything after the minor
// number ignored ("6.1.0-18-amd64" → 6.1).
func parseKernelVersion(s string) (kernelVersion, error) {
	majS, rest, ok := strings.Cut(s, ".")
	if !ok {
		return kernelVersion{}, fmt.Errorf("kernel version %q is not MAJOR.MINOR", s)
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	maj, err1 := strconv.Atoi(majS)
	minor, err2 := strconv.Atoi(rest[:end])
	if err1 != nil || err2 != nil || maj < 0 {
		return kernelVersion{}, fmt.Errorf("kernel version %q is not MAJOR.MINOR", s)
	}
	return kernelVersion{maj, minor}, nil
}
