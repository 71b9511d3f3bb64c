package forgeyaml

// What Forge adds to the allowlist by name, as of the Forge release this
// package follows (forge-core/security/tool_domains.go and
// capabilities.go). They are data, not behaviour: when Forge changes a
// table, this one changes with it, and TestForgeTables pins both.

// forgeToolDomains maps a tool name (tools[].name, builtin_tools[]) to the
// domains Forge infers for it. A tool Forge does not know adds nothing
// (custom tools declare their hosts in allowed_domains).
var forgeToolDomains = map[string][]string{
	"web_search":        {"api.tavily.com", "api.perplexity.ai"},
	"web-search":        {"api.tavily.com", "api.perplexity.ai"},
	"http_request":      {},
	"slack_notify":      {"slack.com", "hooks.slack.com"},
	"github_api":        {"api.github.com", "github.com"},
	"openai_completion": {"api.openai.com"},
	"anthropic_api":     {"api.anthropic.com"},
	"huggingface_api":   {"api-inference.huggingface.co", "huggingface.co"},
	"google_vertex":     {"us-central1-aiplatform.googleapis.com"},
	"sendgrid_email":    {"api.sendgrid.com"},
	"twilio_sms":        {"api.twilio.com"},
	"aws_bedrock":       {"bedrock-runtime.us-east-1.amazonaws.com"},
	"azure_openai":      {"openai.azure.com"},
	"tavily_research":   {"api.tavily.com"},
	"tavily_search":     {"api.tavily.com"},
}

// forgeCapabilityBundles maps egress.capabilities entries to their domains.
// Forge ignores a name it does not know; this package refuses it, since a
// misspelt bundle would silently leave the agent without the service.
var forgeCapabilityBundles = map[string][]string{
	"slack":          {"slack.com", "hooks.slack.com", "api.slack.com"},
	"telegram":       {"api.telegram.org"},
	"brain-download": {"huggingface.co", "cdn-lfs.huggingface.co"},
}

// Forge's profiles and modes (forge-core/security/types.go) and the
// defaults its resolver applies to an empty value.
var (
	forgeProfiles = []string{"strict", "standard", "permissive"}
	forgeModes    = []string{"deny-all", "allowlist", "dev-open"}
)

const (
	defaultProfile = "strict"
	defaultMode    = "deny-all"
	modeAllowlist  = "allowlist"
)
