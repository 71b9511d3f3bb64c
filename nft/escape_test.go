package nft

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRedirectFailureFailsClosed adds foreign rules that keep our nat
// chain from redirecting the agent, and checks the agent's TCP is refused
// rather than let out directly.
func TestRedirectFailureFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name, ruleset string
	}{
		{"untracked packets skip NAT", `
table inet raw_like {
	chain out {
		type filter hook output priority raw; policy accept;
		meta skuid 1000 notrack
	}
}`},
		{"a nat chain ahead of ours binds first", `
table ip early_nat {
	chain out {
		type nat hook output priority -150; policy accept;
		meta skuid 1000 tcp dport 443 dnat to 198.51.100.3:443
	}
}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			cmd := w.pair.Agent.Cmd("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(tc.ruleset)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft -f: %v\n%s", err, out)
			}
			server3 := listenTCP(t, w.pair.World, "tcp4", "198.51.100.3:443", false)
			out, err := w.run(t, asAgent, nil, "nc", "-v", "-z", "-w2", "198.51.100.1", "443")
			if err == nil {
				t.Fatalf("agent connected although the redirect was bypassed:\n%s", out)
			}
			if !strings.Contains(out, "refused") {
				t.Errorf("agent's connect failed without our reset: %q", out)
			}
			expectNone(t, w.server4, "world server")
			expectNone(t, server3, "DNAT target in the world")
			expectNone(t, w.proxy4, "proxy")
			// Nor does a local listener get the agent's TCP directly
			// (untracked: reset; otherwise: redirected to the proxy).
			_, _ = w.run(t, asAgent, nil, "nc", "-z", "-w2", "127.0.0.1", "8080")
			expectNone(t, w.localSvc4, "local service reached directly")
		})
	}
}

// TestAgentServerReplies runs a server as the agent on a declared inbound
// port and connects to it from the world: the agent's replies pass.
func TestAgentServerReplies(t *testing.T) {
	w := newWorldWith(t, func(c *Config) { c.InboundPorts = []uint16{8081} })
	w.pair.Agent.Start(t, "setpriv", append(append([]string{}, asAgent...), "sh", "-c", "echo hello-from-agent | nc -N -l 8081")...)
	var got string
	deadline := time.Now().Add(eventWait)
	for {
		var err error
		if derr := w.pair.World.Do(func() error {
			var c net.Conn
			c, err = net.DialTimeout("tcp", "198.51.100.2:8081", time.Second)
			if err != nil {
				return nil
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(eventWait))
			b, rerr := io.ReadAll(c)
			got, err = string(b), rerr
			return nil
		}); derr != nil {
			t.Fatal(derr)
		}
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("connect to the agent's server: %v", err)
			}
			break
		}
		time.Sleep(50 * time.Millisecond) // the server is still starting
	}
	if got != "hello-from-agent\n" {
		t.Fatalf("read %q from the agent's server", got)
	}
	expectNone(t, w.proxy4, "proxy")
}

// TestInboundUndeclaredPortDropped: a listener the agent opens on a port
// not in InboundPorts is unreachable from outside the pod, the drop is
// counted, and other users' listeners (the supervisor's health port) stay
// reachable.
func TestInboundUndeclaredPortDropped(t *testing.T) {
	w := newWorldWith(t, func(c *Config) { c.InboundPorts = []uint16{8081} })
	listened := make(chan string, 1)
	go func() {
		env := []string{helperEnv + "=listen", "FORGE_NFT_TEST_ADDR=0.0.0.0:5556"}
		out, _ := w.run(t, asAgent, env, w.helper)
		listened <- strings.TrimSpace(out)
	}()
	root := listenTCP(t, w.pair.Agent, "tcp4", "0.0.0.0:15000", false)
	time.Sleep(300 * time.Millisecond) // the helper starts listening
	var dialErr error
	if err := w.pair.World.Do(func() error {
		c, err := net.DialTimeout("tcp", "198.51.100.2:5556", time.Second)
		if err == nil {
			c.Close()
			t.Errorf("the world connected to the agent's undeclared port 5556")
		}
		dialErr = err
		h, err := net.DialTimeout("tcp", "198.51.100.2:15000", time.Second)
		if err != nil {
			t.Errorf("health port unreachable from the world: %v", err)
			return nil
		}
		h.Close()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("dial to 5556: %v; agent's listener: %s", dialErr, <-listened)
	expect(t, root, "root's listener on 15000")
	cfg := testConfig(t, w.pair.Agent)
	n, err := InboundDropped(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("inbound_dropped counter is 0 after a dropped connection")
	}
}
