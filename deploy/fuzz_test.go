package deploy_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/forge/forge-supervisor/deploy"
)

// FuzzKubernetesPolicy: no policy content or agent argument can change the
// manifest's structure. Every line of the ConfigMap's data is indented
// under it, and the Deployment (whose lines contain no input but the
// quoted argument) is byte-identical whatever the policy is, apart from
// the policy hash.
func FuzzKubernetesPolicy(f *testing.F) {
	for _, s := range []string{"{}\n", "a\n\n\n", "  x", "---\nkind: Pod\n", "\"\\\r\n\t\x00", "\u2028#"} {
		f.Add(s, "arg")
	}
	f.Fuzz(func(t *testing.T, policy, arg string) {
		out, err := deploy.Kubernetes(deploy.Options{Image: "i", AgentCommand: []string{"/a", arg}}, []byte(policy))
		if !utf8.ValidString(policy) || policy == "" || !utf8.ValidString(arg) || strings.IndexByte(arg, 0) >= 0 {
			if err == nil {
				t.Fatal("invalid input accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		docs := strings.Split(string(out), "\n---\n")
		if len(docs) != 3 {
			t.Fatalf("want exactly three documents (policy, seccomp, Deployment):\n%s", out)
		}
		cm, dep := docs[0], docs[2]
		_, data, _ := strings.Cut(cm, "\ndata:\n")
		lines := strings.Split(data, "\n")
		if !strings.HasPrefix(lines[0], `  "egress_allowlist.json": `) {
			t.Fatalf("data key line %q", lines[0])
		}
		for _, l := range lines[1:] {
			if l != "" && !strings.HasPrefix(l, "    ") {
				t.Fatalf("policy line escaped its block: %q", l)
			}
		}
		for _, l := range strings.Split(dep, "\n") {
			if strings.HasPrefix(l, "        args: ") {
				continue
			}
			if strings.ContainsAny(l, "\r\t") {
				t.Fatalf("control character in a Deployment line %q", l)
			}
		}
		if strings.Count(dep, "\n") != strings.Count(defaultDeployment(t), "\n") {
			t.Fatalf("Deployment line count changed with the input:\n%s", dep)
		}
	})
}

func defaultDeployment(t *testing.T) string {
	out, err := deploy.Kubernetes(deploy.Options{Image: "i", AgentCommand: []string{"/a", "arg"}}, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(out), "\n---\n")[2]
}
