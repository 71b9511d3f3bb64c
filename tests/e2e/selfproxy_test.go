package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/tests/world"
)

// advertisedProxy is the address the fallback advertises in HTTP_PROXY /
// HTTPS_PROXY; agents (and a Forge runtime) may set it in kernel mode too.
const advertisedProxy = "http://127.0.0.1:15001"

// fetchScript fetches argv[2] through the proxy in the environment with
// argv[1] ("urllib" or "requests") and prints the status and body, or
// "ERR <error>".
const fetchScript = `
import os, ssl, sys
lib, url, ca = sys.argv[1], sys.argv[2], os.environ["CA"]
try:
    if lib == "urllib":
        import urllib.request, urllib.error
        try:
            r = urllib.request.urlopen(url, context=ssl.create_default_context(cafile=ca), timeout=8)
            print(r.status, r.read().decode())
        except urllib.error.HTTPError as e:
            print(e.code, e.read().decode())
    else:
        import requests
        r = requests.get(url, verify=ca, timeout=8)
        print(r.status_code, r.text)
except Exception as e:
    print("ERR", e)
`

// TestAdvertisedProxyInKernelMode (issue #18): in kernel mode an agent
// with HTTPS_PROXY=http://127.0.0.1:15001 is served as an explicit-proxy
// client under the same policy — curl, Python's urllib and requests all
// get allowed.test and a 403 for evil.test — instead of a reset (loop).
func TestAdvertisedProxyInKernelMode(t *testing.T) {
	w, s := startAllowlist(t)
	proxyEnv := []string{"HTTP_PROXY=" + advertisedProxy, "HTTPS_PROXY=" + advertisedProxy,
		"http_proxy=" + advertisedProxy, "https_proxy=" + advertisedProxy, "NO_PROXY=", "CA=" + w.CAFile}

	t.Run("curl", func(t *testing.T) {
		for _, u := range []string{"https://allowed.test/", "http://allowed.test/"} {
			code, body, err := w.Curl("--proxy", advertisedProxy, u)
			if err != nil || code != "200" || !strings.Contains(body, "world says hello to allowed.test") {
				t.Fatalf("curl %s via %s: code %s err %v body %q", u, advertisedProxy, code, err, body)
			}
		}
		code, body, _ := w.Curl("--proxy", advertisedProxy, "http://evil.test/")
		if code != "403" || !strings.Contains(body, "not_in_allowlist") {
			t.Fatalf("curl http://evil.test/ via the proxy: %s %q, want a 403", code, body)
		}
		code, body, err := w.Curl("--proxy", advertisedProxy, "https://evil.test/")
		if err == nil || !strings.Contains(body, "403") {
			t.Fatalf("curl https://evil.test/ via the proxy: %s %v %q, want CONNECT refused with 403", code, err, body)
		}
	})
	for _, lib := range []string{"urllib", "requests"} {
		t.Run("python "+lib, func(t *testing.T) {
			if lib == "requests" {
				if err := exec.Command("/usr/bin/python3", "-c", "import requests").Run(); err != nil {
					t.Skipf("needs python3-requests (installed by .ci/run): %v", err)
				}
			}
			for _, c := range []struct{ url, want string }{
				{"https://allowed.test/", "200 world says hello to allowed.test"},
				{"http://allowed.test/", "200 world says hello to allowed.test"},
				{"http://evil.test/", "403 forge-supervisor: egress to evil.test denied (not_in_allowlist)"},
			} {
				cmd := w.AsAgent("/usr/bin/python3", "-c", fetchScript, lib, c.url)
				cmd.Env = append(cmd.Environ(), proxyEnv...)
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.HasPrefix(string(out), c.want) {
					t.Errorf("%s %s: %v %q, want %q", lib, c.url, err, out, c.want)
				}
			}
		})
	}
	// Every request was audited as an explicit-proxy request, none as a loop.
	for _, e := range s.Events() {
		if strings.HasPrefix(e.Msg(), "egress_") && e.Str("reason") == "loop" {
			t.Errorf("a proxy request was taken for a loop: %v", e)
		}
	}
	e := lastEgress(t, s, func(e world.Event) bool { return e.Str("host") == "evil.test" })
	if e.Msg() != "egress_denied" || e.Str("source") != "explicit" || e.Str("reason") != "not_in_allowlist" {
		t.Errorf("denied proxy request audit: %v", e)
	}
}
