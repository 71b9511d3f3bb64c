package escape

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/world"
)

// TestInboundOnlyDeclaredPorts (issue 11, "Inbound"): a host outside the
// pod reaches the agent's listeners only on FORGE_SUPERVISOR_INBOUND_PORTS;
// a connection to any other port never completes and is counted
// (forge_supervisor_inbound_dropped_packets_total); the health port stays
// reachable.
func TestInboundOnlyDeclaredPorts(t *testing.T) {
	w := world.Base(t, "forge-inbound")
	bin, _ := buildAttacker(t)
	pol := w.WritePolicy(t, "egress_allowlist.json", suitePolicy)
	s := w.StartLaunch(t, world.Launch{Policy: pol, Env: []string{"FORGE_SUPERVISOR_INBOUND_PORTS=5557"}},
		bin, "--listen", "5556", "5557")
	s.WaitReady()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Out.String(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent never listened:\n%s", s.Out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	read := func(addr string) (string, error) {
		var got string
		var derr error
		if err := w.World.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				derr = err
				return nil
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			b, err := io.ReadAll(c)
			got, derr = string(b), err
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got, derr
	}
	if got, err := read("198.51.100.2:5556"); err == nil || got != "" {
		t.Errorf("the world reached the agent on undeclared port 5556: %q %v", got, err)
	} else {
		t.Logf("undeclared port 5556: %v", err)
	}
	if got, err := read("[2001:db8::2]:5556"); err == nil || got != "" {
		t.Errorf("the world reached the agent on undeclared port 5556 over IPv6: %q %v", got, err)
	}
	if got, err := read("198.51.100.2:5557"); err != nil || got != "leaked-5557\n" {
		t.Errorf("declared port 5557: %q %v, want the agent's answer", got, err)
	}
	var metrics string
	if err := w.World.Do(func() error {
		c := &net.Dialer{Timeout: 2 * time.Second}
		conn, err := c.Dial("tcp", "198.51.100.2:15000")
		if err != nil {
			t.Errorf("health port unreachable from the world: %v", err)
			return nil
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET /metrics HTTP/1.0\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(conn)
		metrics = string(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var dropped string
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, "forge_supervisor_inbound_dropped_packets_total "); ok {
			dropped = v
		}
	}
	if dropped == "" || dropped == "0" {
		t.Errorf("forge_supervisor_inbound_dropped_packets_total = %q after a dropped connection", dropped)
	}
}
