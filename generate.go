package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/forge/forge-supervisor/deploy"
	"github.com/forge/forge-supervisor/policy"
)

// What `forge-supervisor generate` can write.
const (
	genAllowlist  = "allowlist"
	genDockerfile = "dockerfile"
	genK8s        = "k8s"
	genSeccomp    = "seccomp"
	genRego       = "rego"
	genDashboard  = "dashboard" // Grafana dashboard JSON (deploy/dashboard.go)
	genAlerts     = "alerts"    // PrometheusRule (deploy/alerts.go)
)

// generateUsage is printed for -h and for a missing or unknown target.
const generateUsage = `usage: forge-supervisor [flags] generate allowlist|dockerfile|k8s|seccomp|rego|dashboard|alerts [generate flags] [--] [AGENT COMMAND...]

  allowlist   the effective egress_allowlist.json of a forge.yaml (-forge-yaml):
              Forge's five keys plus allowed_tcp, allowed_private_cidrs and
              allow_private_ips, endpoints' ports included
  dockerfile  a Dockerfile: FROM scratch, or wrapping the agent's own image
              (-base-image or supervisor.base_image), with the supervisor, the
              seccomp profile and the policy, the agent command as CMD
  k8s         ConfigMaps with the policy and the seccomp profile and a
              Deployment with a minimal SecurityContext and every setting as env
              (needs -image); -network-policy adds a NetworkPolicy
  seccomp     the built-in seccomp profile as Docker/OCI JSON, widened by the
              forge.yaml's requirements (skills' requires.bins,
              supervisor.seccomp)
  rego        the policy (-policy-path) rewritten as a Rego module
  dashboard   a Grafana dashboard (JSON) of the supervisor's metrics
  alerts      a PrometheusRule: denial spikes, degraded interception, reload
              failures, lost audit lines (-name, -namespace)

The supervisor's flags before "generate" (or their FORGE_SUPERVISOR_*
variables, or the forge.yaml's supervisor: section, in that order of
precedence) set every setting the output carries.
Generate flags:
`

// runGenerate writes the requested deployment artefact to stdout and
// returns the exit status: 0, or 2 with a message on stderr.
func runGenerate(cfg Config, args []string, stdout, stderr io.Writer) int {
	out, err := generate(cfg, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, generateUsage)
		fs := generateFlags(cfg, new(deploy.Options))
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "forge-supervisor: generate: %v\n", err)
		return 2
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "forge-supervisor: generate: write: %v\n", err)
		return 2
	}
	return 0
}

// generateFlags binds the generate flags to o, with defaults from cfg.
func generateFlags(cfg Config, o *deploy.Options) *flag.FlagSet {
	fs := flag.NewFlagSet(subGenerate, flag.ContinueOnError)
	fs.StringVar(&o.PolicyPath, "policy-path", cfg.PolicyPath, "policy file to embed (k8s), copy (dockerfile) or convert (rego)")
	fs.StringVar(&o.Image, "image", "", "image reference the Deployment runs (k8s)")
	fs.StringVar(&o.Name, "name", deploy.DefaultName, "name of the Kubernetes objects and the container")
	fs.StringVar(&o.Namespace, "namespace", deploy.DefaultNamespace, "Kubernetes namespace")
	fs.StringVar(&o.BinarySource, "binary-source", deploy.DefaultBinarySrc, "the static supervisor binary, relative to the build context")
	fs.StringVar(&o.SeccompSource, "seccomp-source", deploy.DefaultSeccompSrc, "the seccomp profile, relative to the build context")
	fs.StringVar(&o.PolicySource, "policy-source", "", "the policy, relative to the build context (default: the base name of -policy-path)")
	fs.StringVar(&o.Resources.CPURequest, "cpu-request", deploy.DefaultCPURequest, "container CPU request")
	fs.StringVar(&o.Resources.MemoryRequest, "memory-request", deploy.DefaultMemoryRequest, "container memory request")
	fs.StringVar(&o.Resources.CPULimit, "cpu-limit", deploy.DefaultCPULimit, "container CPU limit")
	fs.StringVar(&o.Resources.MemoryLimit, "memory-limit", deploy.DefaultMemoryLimit, "container memory limit")
	fs.StringVar(&o.Resources.TmpSize, "tmp-size", deploy.DefaultTmpSize, "size limit of the agent's writable /tmp")
	fs.StringVar(&o.BaseImage, "base-image", "", "the agent's own image to wrap (dockerfile; default supervisor.base_image, else FROM scratch)")
	fs.String(flagForgeYAML, "", "a Forge project's forge.yaml: policy, agent command and settings come from it")
	fs.Bool("network-policy", false, "also write a NetworkPolicy with the same egress rules (k8s)")
	return fs
}

// generate renders one artefact. args are everything after "generate".
func generate(cfg Config, args []string) ([]byte, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		return nil, flag.ErrHelp
	}
	what := args[0]
	o := deploy.Options{
		AgentUID: cfg.AgentUID, AgentGID: cfg.AgentGID,
		ProxyPort: cfg.ProxyPort, DNSPort: cfg.DNSPort, HealthPort: cfg.HealthPort,
		Grace: cfg.Grace, SeccompPath: cfg.SeccompPath, Settings: cfg.deploySettings(),
		InboundPorts: cfg.InboundPorts, NoFastPath: !cfg.fastPathOn(),
	}
	fs := generateFlags(cfg, &o)
	fs.SetOutput(io.Discard) // errors are returned; -h prints the usage
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	o.AgentCommand = fs.Args()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	src, err := generateSource(fs.Lookup(flagForgeYAML).Value.String(), set, &o)
	if err != nil {
		return nil, err
	}
	withNetworkPolicy := fs.Lookup("network-policy").Value.String() == "true"
	switch what {
	case genAllowlist:
		if len(fs.Args()) > 0 {
			return nil, fmt.Errorf("allowlist takes no agent command, got %q", fs.Args())
		}
		if src.project == nil {
			return nil, errors.New("allowlist needs -forge-yaml FILE (a Forge-built egress_allowlist.json is already the allowlist)")
		}
		return src.policy()
	case genDockerfile:
		return deploy.Dockerfile(o)
	case genK8s:
		data, err := src.policy()
		if err != nil {
			return nil, err
		}
		if o.Seccomp, err = src.seccomp(); err != nil {
			return nil, err
		}
		if withNetworkPolicy {
			if o.NetworkPolicy, err = networkEgress(o.PolicyPath, data); err != nil {
				return nil, err
			}
		}
		return deploy.Kubernetes(o, data)
	case genSeccomp:
		if len(fs.Args()) > 0 {
			return nil, fmt.Errorf("seccomp takes no agent command, got %q", fs.Args())
		}
		return src.seccomp()
	case genDashboard:
		return deploy.Dashboard()
	case genAlerts:
		return deploy.Alerts(o.Name, o.Namespace)
	case genRego:
		if len(fs.Args()) > 0 {
			return nil, fmt.Errorf("rego takes no agent command, got %q", fs.Args())
		}
		p, err := src.parsedPolicy()
		if err != nil {
			return nil, err
		}
		return deploy.Rego(p)
	}
	return nil, fmt.Errorf("unknown target %q: want allowlist, dockerfile, k8s, seccomp or rego (-h for usage)", what)
}

// loadPolicy reads the policy file once and parses it as the supervisor
// would (Rego by the .rego suffix), so a manifest never embeds a policy
// that would only fail in the pod. It returns the bytes and the policy.
func loadPolicy(path string) ([]byte, *policy.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, deploy.MaxPolicyBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %s: read: %w", path, err)
	}
	if len(data) > deploy.MaxPolicyBytes {
		return nil, nil, fmt.Errorf("policy: %s: larger than %d bytes, the most a ConfigMap holds", path, deploy.MaxPolicyBytes)
	}
	var p *policy.Policy
	if strings.HasSuffix(path, policy.RegoSuffix) {
		p, err = policy.ParseRego(path, data)
	} else if p, err = policy.Parse(data); err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return data, p, nil
}
