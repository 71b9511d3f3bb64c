package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/forge/forge-supervisor/deploy"
)

// TestManifestsDecodeIntoKubernetesTypes decodes every generated document
// strictly (an unknown or misplaced field is an error) into the API types
// kubectl would send, and checks what the pod will actually do. k8s.io/api
// is a test-only dependency: the binary never links it.
func TestManifestsDecodeIntoKubernetesTypes(t *testing.T) {
	o := deploy.Options{
		Name: "coder", Namespace: "agents", Image: "registry.example/coder:1",
		AgentCommand: []string{"node", "agent.js"}, InboundPorts: []uint16{8080},
		Settings: []deploy.Setting{{Env: "FORGE_SUPERVISOR_DRY_RUN", Value: "true"}, {Env: "FORGE_SUPERVISOR_PROXY_PORT", Value: "1"}},
		NetworkPolicy: &deploy.Egress{Mode: "allowlist", Domains: []string{"api.example.com"}, TCPPorts: []uint16{5432},
			CIDRs: []string{"10.96.0.0/12"}},
	}
	out, err := deploy.Kubernetes(o, []byte(`{"mode":"allowlist","allowed_domains":["api.example.com"]}`+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "\n---\n")
	if len(docs) != 4 {
		t.Fatalf("%d documents, want 4", len(docs))
	}
	var policyCM, seccompCM corev1.ConfigMap
	var dep appsv1.Deployment
	var np networkingv1.NetworkPolicy
	for i, dst := range []any{&policyCM, &seccompCM, &dep, &np} {
		if err := yaml.UnmarshalStrict([]byte(docs[i]), dst); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, docs[i])
		}
	}
	if policyCM.Kind != "ConfigMap" || policyCM.Data["egress_allowlist.json"] == "" || seccompCM.Data["seccomp.json"] == "" {
		t.Errorf("ConfigMaps: %+v %+v", policyCM.ObjectMeta, seccompCM.ObjectMeta)
	}

	pod := dep.Spec.Template.Spec
	if dep.Kind != "Deployment" || dep.Namespace != "agents" || len(pod.Containers) != 1 {
		t.Fatalf("Deployment: %+v", dep.ObjectMeta)
	}
	if sel := dep.Spec.Selector.MatchLabels; sel["app.kubernetes.io/name"] != "coder" || dep.Spec.Template.Labels["app.kubernetes.io/name"] != "coder" {
		t.Errorf("selector %v does not select the template's labels %v", sel, dep.Spec.Template.Labels)
	}
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{
		"FORGE_SUPERVISOR_POLICY_PATH": "/etc/forge/policy/egress_allowlist.json", "FORGE_SUPERVISOR_SECCOMP_PATH": "/etc/forge/seccomp/seccomp.json",
		"FORGE_SUPERVISOR_REQUIRE_KERNEL": "true", "FORGE_SUPERVISOR_DRY_RUN": "true", "FORGE_SUPERVISOR_PROXY_PORT": "15001",
	} {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	// Each mount names a volume whose ConfigMap is one of the documents.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s names no volume", m.Name)
		}
	}
	if cm := vols[mounts["/etc/forge/policy"]].ConfigMap; cm == nil || cm.Name != policyCM.Name {
		t.Errorf("policy mount is not the policy ConfigMap")
	}
	if cm := vols[mounts["/etc/forge/seccomp"]].ConfigMap; cm == nil || cm.Name != seccompCM.Name || *cm.DefaultMode != 0o444 {
		t.Errorf("seccomp mount is not the seccomp ConfigMap (0444)")
	}
	sc := c.SecurityContext
	if *sc.RunAsUser != 0 || *sc.Privileged || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext %+v", sc)
	}
	if got, want := fmt.Sprint(sc.Capabilities.Add), "[NET_ADMIN SETUID SETGID SETPCAP KILL NET_RAW]"; got != want {
		t.Errorf("capabilities added %s, want %s (the fast path is on by default)", got, want)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Port.StrVal != "health" {
		t.Errorf("probes %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if len(c.Ports) != 2 || c.Ports[0].ContainerPort != 15000 || c.Ports[1].ContainerPort != 8080 {
		t.Errorf("ports %+v", c.Ports)
	}
	if c.Resources.Limits.Memory().String() != "2Gi" || c.Resources.Requests.Cpu().String() != "250m" {
		t.Errorf("resources %+v", c.Resources)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 15 || *pod.AutomountServiceAccountToken {
		t.Errorf("pod spec %+v", pod)
	}

	// The NetworkPolicy selects the pod and allows DNS, 80, 443, 5432 and
	// the CIDR, nothing else.
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "coder" || len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != "Egress" {
		t.Errorf("NetworkPolicy %+v", np.Spec)
	}
	var ports []string
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			s := string(*p.Protocol)
			if p.Port != nil {
				s += ":" + p.Port.String()
			}
			ports = append(ports, s)
		}
	}
	if got, want := strings.Join(ports, " "), "UDP:53 TCP:53 TCP:80 TCP:443 TCP:5432 TCP"; got != want {
		t.Errorf("egress ports %q, want %q", got, want)
	}
	if last := np.Spec.Egress[len(np.Spec.Egress)-1]; len(last.To) != 1 || last.To[0].IPBlock.CIDR != "10.96.0.0/12" {
		t.Errorf("CIDR rule %+v", last)
	}
}

// TestGoldenManifestsDecode: the manifests generated from the forge.yaml
// projects (golden files of the main package's test) decode strictly into
// the API type their kind names.
func TestGoldenManifestsDecode(t *testing.T) {
	files, err := filepath.Glob("../forgeyaml/testdata/projects/*/want/k8s.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("golden manifests: %v %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for i, doc := range strings.Split(string(data), "\n---\n") {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var dst any
			switch meta.Kind {
			case "ConfigMap":
				dst = &corev1.ConfigMap{}
			case "Deployment":
				dst = &appsv1.Deployment{}
			case "NetworkPolicy":
				dst = &networkingv1.NetworkPolicy{}
			default:
				t.Fatalf("%s document %d: kind %q", f, i, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), dst); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i, meta.Kind, err)
			}
			kinds = append(kinds, meta.Kind)
		}
		if got := strings.Join(kinds, ","); got != "ConfigMap,ConfigMap,Deployment,NetworkPolicy" {
			t.Errorf("%s: kinds %s", f, got)
		}
	}
}
