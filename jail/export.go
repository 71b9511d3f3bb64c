package jail

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// MarshalOCI returns p as Docker/OCI seccomp profile JSON, indented and
// ending in a newline: the format Docker's --security-opt seccomp=FILE,
// podman, Kubernetes' Localhost profiles and ParseProfile all read, so one
// file serves every runtime and the supervisor alike. The profile is
// validated first, so what is written can always be read back.
func (p *Profile) MarshalOCI() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("seccomp profile: export: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // comments stay readable; JSON needs no HTML escaping
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("seccomp profile: export: encode JSON: %w", err)
	}
	return buf.Bytes(), nil
}
