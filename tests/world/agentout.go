package world

import (
	"bufio"
	"encoding/json"
	"strings"
)

// AgentLines returns the lines the agent printed on stream ("stdout" or
// "stderr"), reassembled from the agent_output records of a supervisor
// log: a record marked partial continues in the stream's next record.
func AgentLines(log, stream string) []string {
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Msg     string `json:"msg"`
			Stream  string `json:"stream"`
			Line    string `json:"line"`
			Partial bool   `json:"partial"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Msg != "agent_output" || r.Stream != stream {
			continue
		}
		cur.WriteString(r.Line)
		if !r.Partial {
			lines = append(lines, cur.String())
			cur.Reset()
		}
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// AgentStdout is the agent's stdout, one line each, from the log so far.
func (s *Supervisor) AgentStdout() []string { return AgentLines(s.Out.String(), "stdout") }

// AgentStderr is the agent's stderr, joined with newlines.
func (s *Supervisor) AgentStderr() string {
	return strings.Join(AgentLines(s.Out.String(), "stderr"), "\n")
}
