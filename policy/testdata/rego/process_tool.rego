package forge.egress

# The model client may reach the LLM API; nothing started by the tool
# runner may reach anything, not even DNS.

tool_runner := "/usr/local/bin/tool-runner"

under_tool if tool_runner in input.process.ancestors

under_tool if input.process.exe == tool_runner

allowed := {"api.example.com"}

decision := {"allow": false, "reason": "tool_subprocess", "rule": "no_tool_egress"} if {
	under_tool
} else := {"allow": true, "reason": "llm_dns", "rule": "allowed"} if {
	input.kind == "dns"
	input.name in allowed
} else := {"allow": true, "reason": "llm_https", "rule": "allowed"} if {
	input.kind == "tcp"
	input.port == 443
	input.name in allowed
} else := {"allow": false, "reason": "not_allowed"}
