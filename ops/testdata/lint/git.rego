package forge.egress

# Only git reaches github.com. git's HTTPS transport runs as a helper
# (git-remote-https under /usr/lib/git-core), a child of /usr/bin/git, so
# the rule accepts git itself and its helpers when git is their parent.

github_names := {"github.com", "api.github.com", "codeload.github.com"}

git := "/usr/bin/git"

is_git if input.process.exe == git

is_git if {
	startswith(input.process.exe, "/usr/lib/git-core/")
	input.process.ancestors[0] == git
}

default decision := {"allow": false, "reason": "not_allowed"}

# Names resolve for everybody: a DNS answer carries nothing to github.
decision := {"allow": true, "reason": "github_dns", "rule": "github_names"} if {
	input.kind == "dns"
	input.name in github_names
}

decision := {"allow": true, "reason": "git_https", "rule": "git_only"} if {
	input.kind == "tcp"
	input.port == 443
	input.name in github_names
	is_git
}

decision := {"allow": false, "reason": "not_git", "rule": "git_only"} if {
	input.kind == "tcp"
	input.name in github_names
	not is_git
}
