package stages

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/internal/testkit"
	"github.com/forge/forge-supervisor/policy"
)

// bannerServer speaks first (as SSH does), then echoes; received returns
// every byte it got from its clients.
func bannerServer(t *testing.T) (addr string, received func() string) {
	t.Helper()
	var (
		mu  sync.Mutex
		got strings.Builder
	)
	addr = testkit.Listen(t, func(c net.Conn) {
		io.WriteString(c, "SSH-2.0-banner\r\n")
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
			c.Write(buf[:n])
		}
	})
	return addr, func() string {
		mu.Lock()
		defer mu.Unlock()
		return got.String()
	}
}

// TestServerSpeaksFirstDialsAtOnce (issue #15): when the decision needs no
// name (allowed_tcp allowed.test:7000, the address learned for it), the
// upstream is dialled at once and its banner reaches the client long
// before the classification deadline; the old engine dialled only after
// waiting it out.
func TestServerSpeaksFirstDialsAtOnce(t *testing.T) {
	const classify = 3 * time.Second
	addr, _ := bannerServer(t)
	h := startHarness(t, map[uint16]string{7000: addr}, func(c *Config) { c.ClassifyTimeout = classify })
	h.to(worldIP, 7000)
	start := time.Now()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * classify))
	br := bufio.NewReader(c)
	banner, err := br.ReadString('\n')
	if err != nil || banner != "SSH-2.0-banner\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	// A generous bound: a behaviour, not a benchmark.
	if el := time.Since(start); el > classify/3 {
		t.Fatalf("banner after %v: the engine waited for the client (classify timeout %v)", el, classify)
	}
	io.WriteString(c, "SSH-2.0-client\r\n")
	if echo, err := br.ReadString('\n'); err != nil || echo != "SSH-2.0-client\r\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}
	c.Close()
	ev := h.events(1)[0]
	checkEvent(t, ev, map[string]any{"msg": "egress_allowed", "proto": "opaque", "reason": policy.ReasonLearnedIP,
		"bytes_up": float64(len("SSH-2.0-client\r\n")), "bytes_down": float64(2 * len("SSH-2.0-banner\r\n"))})
}

// TestEarlyDialStillJudgesTheName: dialling early changes nothing of the
// decision. A TLS client naming a denied host on the same learned
// address:port is denied, and the upstream never gets one of its bytes.
func TestEarlyDialStillJudgesTheName(t *testing.T) {
	addr, received := bannerServer(t)
	h := startHarness(t, map[uint16]string{7000: addr}, func(*Config) {})
	h.to(worldIP, 7000)
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(raw, &tls.Config{ServerName: "evil.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake with a denied SNI completed")
	}
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_denied", "sni": "evil.test", "reason": policy.ReasonNotAllowed})
	time.Sleep(50 * time.Millisecond)
	if got := received(); got != "" {
		t.Errorf("the upstream received %d bytes of a denied client", len(got))
	}
}

// TestEarlyDialReadOnlyClient: a client that takes the banner and closes
// without a word was served, and is audited as allowed.
func TestEarlyDialReadOnlyClient(t *testing.T) {
	addr, _ := bannerServer(t)
	h := startHarness(t, map[uint16]string{7000: addr}, func(*Config) {})
	h.to(worldIP, 7000)
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "SSH-2.0-banner\r\n" {
		t.Fatalf("banner %q, %v", line, err)
	}
	c.Close()
	checkEvent(t, h.events(1)[0], map[string]any{"msg": "egress_allowed", "reason": policy.ReasonLearnedIP, "bytes_up": float64(0)})
}
