// Command attacker is the agent of the escape suite: forge-supervisor runs
// it jailed (UID 1000, no capabilities, no_new_privs, seccomp) and it tries,
// one vector at a time, to reach a host outside the allowlist or to shed
// the jail. Each attempt prints one JSON line (see Result) on stdout.
//
//	attacker all            every vector, in order
//	attacker VECTOR...      just those
//	attacker list           the vector names
//
// The agent's own verdict ("blocked"/"escaped") is only half of the story:
// the test decides with what the world's servers actually received.
//
// Environment (set by the test): ESCAPE_CA (PEM of the world's CA),
// ESCAPE_SUID (a setuid-root copy of this binary), ESCAPE_SECRET (a token
// that must never show up in the supervisor's logs or endpoints).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// vectorTimeout bounds one attempt, so a hung vector cannot stall the
// suite; the slowest vectors (slow clients) need a few seconds.
const vectorTimeout = 20 * time.Second

// Observed values.
const (
	blocked = "blocked"
	escaped = "escaped"
	allowed = "allowed" // controls: the legitimate path works
)

// Flow is one TCP connection the agent opened: the test finds its audit
// event by these three values.
type Flow struct {
	DstIP   string `json:"dst_ip"`
	DstPort int    `json:"dst_port"`
	SrcPort int    `json:"src_port"`
}

// Query is one DNS question the agent sent.
type Query struct {
	Qname string `json:"qname"`
	Qtype string `json:"qtype"`
}

// Result is one vector's line.
type Result struct {
	Vector   string   `json:"vector"`
	Observed string   `json:"observed"`
	Detail   string   `json:"detail"`
	Flows    []Flow   `json:"flows,omitempty"`
	Queries  []Query  `json:"queries,omitempty"`
	SNIs     []string `json:"snis,omitempty"` // flows whose source port the agent cannot know (curl)
}

type vectorFunc func(r *Result)

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(r *Result) {
	out.Lock()
	defer out.Unlock()
	_ = out.enc.Encode(r)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: attacker all | list | VECTOR...")
		os.Exit(2)
	}
	// Hidden helper modes (re-executed by some vectors) come first.
	if h, ok := helpers[os.Args[1]]; ok {
		os.Exit(h(os.Args[2:]))
	}
	names := os.Args[1:]
	switch names[0] {
	case "list":
		for _, v := range vectors {
			fmt.Println(v.name)
		}
		return
	case "all":
		names = nil
		for _, v := range vectors {
			names = append(names, v.name)
		}
	}
	for _, n := range names {
		run(n)
	}
}

func run(name string) {
	var fn vectorFunc
	for _, v := range vectors {
		if v.name == name {
			fn = v.fn
		}
	}
	r := &Result{Vector: name, Observed: blocked}
	if fn == nil {
		r.Observed, r.Detail = "error", "unknown vector"
		emit(r)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	select {
	case <-done:
	case <-time.After(vectorTimeout):
		r = &Result{Vector: name, Observed: "error", Detail: "vector timed out"}
	}
	emit(r)
}

// note appends to the detail.
func (r *Result) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	if r.Detail == "" {
		r.Detail = s
		return
	}
	r.Detail += "; " + s
}

// escape marks the vector escaped (from the agent's point of view).
func (r *Result) escape(format string, args ...any) {
	r.Observed = escaped
	r.note(format, args...)
}

// marker is the vector's name as a DNS label: the test looks for it in
// everything the world received.
func marker(vector string) string { return strings.ReplaceAll(vector, "_", "-") }
