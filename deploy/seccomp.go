package deploy

import "github.com/forge/forge-supervisor/jail"

// Seccomp renders the supervisor's built-in seccomp profile as Docker/OCI
// JSON. The same file serves as Docker's --security-opt seccomp=FILE,
// podman's, a Kubernetes Localhost profile and the supervisor's own
// -seccomp-path (which the Dockerfile puts at /etc/forge/seccomp.json, so
// the profile a deployment runs with is the one it shipped and reviewed).
func Seccomp() ([]byte, error) {
	return jail.DefaultProfile().MarshalOCI()
}
