// Command agentlines prints what the agent printed, from a supervisor log
// on stdin: the line of every agent_output record (a record marked partial
// continues in the stream's next one), stdout and stderr alike. The demo
// uses it to show the agent's table next to the audit events.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pending := map[string]string{}
	for sc.Scan() {
		var r struct {
			Msg     string `json:"msg"`
			Stream  string `json:"stream"`
			Line    string `json:"line"`
			Partial bool   `json:"partial"`
		}
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Msg != "agent_output" {
			continue
		}
		if r.Partial {
			pending[r.Stream] += r.Line
			continue
		}
		fmt.Println(pending[r.Stream] + r.Line)
		delete(pending, r.Stream)
	}
	for _, rest := range pending {
		fmt.Println(rest)
	}
}
