// Package deploy renders what a deployment of forge-supervisor needs: a
// Dockerfile (FROM scratch, or wrapping the agent's own image), Kubernetes
// manifests with a tight SecurityContext (and an optional NetworkPolicy),
// the seccomp profile as Docker/OCI JSON (built-in, or widened by the
// requirement table), and a Rego policy from an allowlist.
//
// Everything is rendered as text built deterministically from Options: the
// same Options always give the same bytes, so the output can be committed,
// diffed and reviewed like code.
package deploy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Paths inside the image. They are the supervisor's own defaults (see
// DESIGN.md), so the image needs no configuration to find them.
const (
	// ImageBinary is where the Dockerfile puts the supervisor.
	ImageBinary = "/forge-supervisor"
	// ImagePolicyDir holds the policy baked into the image.
	ImagePolicyDir = "/etc/forge"
	// ImageSeccomp is the seccomp profile baked into the image, which is
	// also the supervisor's default -seccomp-path.
	ImageSeccomp = "/etc/forge/seccomp.json"
	// defaultPolicyFile is the supervisor's default policy file name.
	defaultPolicyFile = "egress_allowlist.json"
	// regoPolicyFile is the name a Rego policy gets: the supervisor picks
	// the Rego engine by the .rego extension.
	regoPolicyFile = "policy.rego"
	// podPolicyDir is where the policy ConfigMap is mounted in a pod. It is
	// a directory of its own (not /etc/forge) so the mount does not hide the
	// seccomp profile baked into the image, and not a subPath mount, which
	// kubelet never updates.
	podPolicyDir = "/etc/forge/policy"
)

// The supervisor's defaults (DESIGN.md's interface contract).
const (
	DefaultProxyPort  = 15001
	DefaultDNSPort    = 15002
	DefaultHealthPort = 15000
	DefaultAgentUID   = 1000
	DefaultAgentGID   = 1000
	DefaultGrace      = 10 * time.Second
	DefaultName       = "forge-agent"
	DefaultNamespace  = "default"
	DefaultBinarySrc  = "forge-supervisor"
	DefaultSeccompSrc = "seccomp.json"
)

// Default resources of the pod's one container, which holds the supervisor
// (tens of MiB, a fraction of a core at agent-scale traffic) and the agent.
// They bound a runaway agent; most deployments will raise them to fit the
// agent.
const (
	DefaultCPURequest    = "250m"
	DefaultMemoryRequest = "256Mi"
	DefaultCPULimit      = "2"
	DefaultMemoryLimit   = "2Gi"
	// DefaultTmpSize bounds the emptyDir at /tmp: the root filesystem is
	// read-only, so this is all the agent can write.
	DefaultTmpSize = "1Gi"
)

// Limits of the inputs. Each says why that size.
const (
	// maxLabel is the length of a DNS-1123 label, which Kubernetes requires
	// of namespaces and container names (and the Deployment name here, so
	// it can also be a label value).
	maxLabel = 63
	// maxImageRef is a generous bound on an image reference: registries cap
	// repository names at 255 and tags at 128.
	maxImageRef = 512
	// maxArgs bounds the agent command; a real command line has a handful.
	maxArgs = 1024
	// maxGrace: Kubernetes' terminationGracePeriodSeconds is an int64, but
	// a grace beyond an hour is a typo; the supervisor caps at a day.
	maxGrace = time.Hour
)

// Options says what to render. The zero value of every field selects the
// supervisor's default (see WithDefaults).
type Options struct {
	// Name names the Kubernetes objects and the container; a DNS-1123 label.
	Name string
	// Namespace is the Kubernetes namespace; a DNS-1123 label.
	Namespace string
	// Image is the image reference the Deployment runs (what the
	// Dockerfile was built into). Required for Kubernetes.
	Image string
	// AgentCommand is the agent's argv: the Dockerfile's CMD and the
	// container's args. Empty: no CMD, and the pod uses the image's CMD.
	AgentCommand []string
	// PolicyPath is the policy file. Its base name is its path in the build
	// context (see PolicySource) and its extension picks the format: .rego
	// is Rego, anything else Forge's egress_allowlist.json.
	PolicyPath string
	// PolicySource, BinarySource and SeccompSource are the Dockerfile's
	// COPY sources, relative to the build context. Defaults: the base name
	// of PolicyPath, "forge-supervisor" and "seccomp.json".
	PolicySource  string
	BinarySource  string
	SeccompSource string
	AgentUID      uint32
	AgentGID      uint32
	ProxyPort     uint16
	DNSPort       uint16
	HealthPort    uint16
	// Grace is the supervisor's SIGTERM→SIGKILL grace for the agent; the
	// pod's termination grace period is longer so the supervisor, not the
	// kubelet, ends the agent.
	Grace     time.Duration
	Resources Resources
	// BaseImage, when set, makes the Dockerfile wrap the agent's own image
	// (multi-stage: the supervisor's files come from a scratch stage) instead
	// of building FROM scratch.
	BaseImage string
	// SeccompPath is the seccomp profile's path inside the image (the
	// supervisor's -seccomp-path); default ImageSeccomp.
	SeccompPath string
	// Seccomp is the profile (OCI JSON) the Kubernetes ConfigMap holds;
	// empty: the built-in profile.
	Seccomp []byte
	// Settings are the supervisor's other settings (everything but the
	// fields above), in its own order: the Deployment sets every one, the
	// Dockerfile those that differ from the default.
	Settings []Setting
	// InboundPorts are ports the agent listens on (containerPorts).
	InboundPorts []uint16
	// NoFastPath: the supervisor's settings keep the kernel verdict path
	// (kverdict/) off (FORGE_SUPERVISOR_FAST_PATH=0, or a setting that rules
	// it out), so the container is not given NET_RAW. It is a negative so
	// that the zero value, like every other field's, is the supervisor's
	// default: the fast path on.
	NoFastPath bool
	// NetworkPolicy, when set, adds a NetworkPolicy for these egress rules.
	NetworkPolicy *Egress
}

// Setting is one supervisor setting as its environment variable.
type Setting struct {
	Env, Value string
	// IsDefault: the value is the supervisor's default.
	IsDefault bool
}

// Resources are Kubernetes quantities of the container and /tmp.
type Resources struct {
	CPURequest, MemoryRequest string
	CPULimit, MemoryLimit     string
	TmpSize                   string
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	setString(&o.Name, DefaultName)
	setString(&o.Namespace, DefaultNamespace)
	setString(&o.PolicyPath, path.Join(ImagePolicyDir, defaultPolicyFile))
	setString(&o.PolicySource, path.Base(o.PolicyPath))
	setString(&o.BinarySource, DefaultBinarySrc)
	setString(&o.SeccompSource, DefaultSeccompSrc)
	setString(&o.SeccompPath, ImageSeccomp)
	if o.AgentUID == 0 {
		o.AgentUID = DefaultAgentUID
	}
	if o.AgentGID == 0 {
		o.AgentGID = DefaultAgentGID
	}
	if o.ProxyPort == 0 {
		o.ProxyPort = DefaultProxyPort
	}
	if o.DNSPort == 0 {
		o.DNSPort = DefaultDNSPort
	}
	if o.HealthPort == 0 {
		o.HealthPort = DefaultHealthPort
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	r := &o.Resources
	setString(&r.CPURequest, DefaultCPURequest)
	setString(&r.MemoryRequest, DefaultMemoryRequest)
	setString(&r.CPULimit, DefaultCPULimit)
	setString(&r.MemoryLimit, DefaultMemoryLimit)
	setString(&r.TmpSize, DefaultTmpSize)
	return o
}

func setString(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// isRego reports whether the policy is Rego, as the supervisor decides it.
func (o Options) isRego() bool {
	return strings.HasSuffix(o.PolicyPath, ".rego")
}

// policyFile is the policy's file name inside the image and the pod.
func (o Options) policyFile() string {
	if o.isRego() {
		return regoPolicyFile
	}
	return defaultPolicyFile
}

var (
	// dns1123Label is Kubernetes' rule for names of namespaces, containers
	// and label values used as names.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// quantity is the subset of Kubernetes' resource.Quantity syntax that
	// people write: a decimal number with an optional SI or binary suffix.
	// envName is the supervisor's variable names.
	envName  = regexp.MustCompile(`^FORGE_SUPERVISOR_[A-Z0-9_]+$`)
	quantity = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)
)

// validate checks o (after WithDefaults). forK8s adds what only the
// manifests need. Every problem is reported, each naming its field.
func (o Options) validate(forK8s bool) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("deploy: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, f := range []struct{ field, v string }{{"name", o.Name}, {"namespace", o.Namespace}} {
		if len(f.v) > maxLabel || !dns1123Label.MatchString(f.v) {
			bad(f.field, "%q is not a DNS-1123 label (lowercase letters, digits and '-', at most %d, starting and ending alphanumeric)", f.v, maxLabel)
		}
	}
	if forK8s && o.Image == "" {
		bad("image", "required for Kubernetes manifests (the reference the Dockerfile was built into)")
	}
	if len(o.Image) > maxImageRef || strings.ContainsFunc(o.Image, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		bad("image", "%q is not an image reference (no spaces or control characters, at most %d bytes)", o.Image, maxImageRef)
	}
	if o.BaseImage != "" && (len(o.BaseImage) > maxImageRef || strings.ContainsFunc(o.BaseImage, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) })) {
		bad("base image", "%q is not an image reference (no spaces or control characters, at most %d bytes)", o.BaseImage, maxImageRef)
	}
	if !path.IsAbs(o.SeccompPath) || strings.ContainsFunc(o.SeccompPath, unicode.IsControl) {
		bad("seccomp path", "%q must be an absolute path without control characters", o.SeccompPath)
	}
	for _, s := range o.Settings {
		if !envName.MatchString(s.Env) || !utf8.ValidString(s.Value) || strings.ContainsFunc(s.Value, unicode.IsControl) {
			bad("settings", "%s=%q: a variable name and a value without control characters", s.Env, s.Value)
		}
	}
	if len(o.AgentCommand) > maxArgs {
		bad("agent command", "%d arguments, at most %d", len(o.AgentCommand), maxArgs)
	}
	if len(o.AgentCommand) > 0 && o.AgentCommand[0] == "" {
		bad("agent command", "the command (argv[0]) is empty")
	}
	for i, a := range o.AgentCommand {
		if !utf8.ValidString(a) || strings.IndexByte(a, 0) >= 0 {
			bad("agent command", "argv[%d] is not valid UTF-8 without NUL bytes", i)
		}
	}
	for _, f := range []struct{ field, v string }{
		{"policy path", o.PolicyPath}, {"policy source", o.PolicySource},
		{"binary source", o.BinarySource}, {"seccomp source", o.SeccompSource},
	} {
		if f.v == "" || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, unicode.IsControl) {
			bad(f.field, "%q must be a non-empty path without control characters", f.v)
		}
	}
	if o.AgentUID == 0 || o.AgentGID == 0 {
		bad("agent uid/gid", "%d/%d: the agent never runs as root", o.AgentUID, o.AgentGID)
	}
	if o.AgentUID == 1<<32-1 || o.AgentGID == 1<<32-1 {
		bad("agent uid/gid", "4294967295 is (uid_t)-1, \"unchanged\" to the kernel")
	}
	if o.ProxyPort == o.DNSPort || o.ProxyPort == o.HealthPort || o.DNSPort == o.HealthPort {
		bad("ports", "proxy %d, dns %d and health %d must differ", o.ProxyPort, o.DNSPort, o.HealthPort)
	}
	if o.Grace < time.Second || o.Grace > maxGrace {
		bad("grace", "%v must be between 1s and %v", o.Grace, maxGrace)
	}
	for _, f := range []struct{ field, v string }{
		{"cpu request", o.Resources.CPURequest}, {"memory request", o.Resources.MemoryRequest},
		{"cpu limit", o.Resources.CPULimit}, {"memory limit", o.Resources.MemoryLimit},
		{"tmp size", o.Resources.TmpSize},
	} {
		if !quantity.MatchString(f.v) {
			bad(f.field, "%q is not a Kubernetes quantity (e.g. 250m, 2, 512Mi, 1Gi)", f.v)
		}
	}
	return errors.Join(errs...)
}
