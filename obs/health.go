package obs

import (
	"slices"
	"sync"
)

// Readiness parts the supervisor reports. Interception's detail is
// "kernel" or "fallback".
const (
	PartPolicy       = "policy"
	PartInterception = "interception"
	PartProxy        = "proxy"
	PartDNS          = "dns"
	PartAgent        = "agent"
)

// Health is the supervisor's liveness flag and the readiness of its parts.
// Every part starts not ready; the supervisor is ready when all are. It is
// safe for concurrent use.
type Health struct {
	mu    sync.RWMutex
	alive bool
	parts map[string]PartStatus
}

// PartStatus is the readiness of one part.
type PartStatus struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// NewHealth returns a Health with the given parts, all not ready, and not
// alive.
func NewHealth(parts ...string) *Health {
	h := &Health{parts: make(map[string]PartStatus, len(parts))}
	for _, p := range parts {
		h.parts[p] = PartStatus{Detail: "starting"}
	}
	return h
}

// SetAlive sets liveness: true while the actors run.
func (h *Health) SetAlive(alive bool) {
	h.mu.Lock()
	h.alive = alive
	h.mu.Unlock()
}

// Alive reports liveness.
func (h *Health) Alive() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.alive
}

// Set records the readiness of part. A part not named to NewHealth is added,
// so readiness can only get stricter, never silently ignore a report.
func (h *Health) Set(part string, ok bool, detail string) {
	h.mu.Lock()
	h.parts[part] = PartStatus{OK: ok, Detail: detail}
	h.mu.Unlock()
}

// Readiness is a snapshot of every part.
type Readiness struct {
	Ready bool                  `json:"ready"`
	Parts map[string]PartStatus `json:"parts"`
	// Failing names the parts that are not ready, sorted.
	Failing []string `json:"failing"`
	// Interception is the interception part's detail ("kernel" or
	// "fallback"), repeated at the top so a degraded supervisor is obvious.
	Interception string `json:"interception,omitempty"`
}

// Readiness returns a snapshot. With no parts at all the supervisor is not
// ready: there is nothing to vouch for it.
func (h *Health) Readiness() Readiness {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := Readiness{Parts: make(map[string]PartStatus, len(h.parts)), Failing: []string{}}
	for name, st := range h.parts {
		r.Parts[name] = st
		if !st.OK {
			r.Failing = append(r.Failing, name)
		}
	}
	slices.Sort(r.Failing)
	r.Interception = h.parts[PartInterception].Detail
	r.Ready = len(h.parts) > 0 && len(r.Failing) == 0
	return r
}
