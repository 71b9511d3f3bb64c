package bench

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/forge/forge-supervisor/tests/testpki"
)

// The ClientHello probe: connect, send one ClientHello recorded from
// crypto/tls (SNI allowed.test, ALPN probeALPN), read the first byte of the
// answer. The server answers a probe with a handshake record header at
// once instead of doing the handshake. The probe crosses exactly what the
// kernel verdict path adds to a connection — the SYN's rules, the first
// payload's trip through the verdict worker, HAProxy's SNI ACL, the
// engine's classify and dial — without the key exchange and signatures,
// whose ~1 ms of CPU per connection is the same on every path and only
// adds noise to a difference of tens of microseconds.

// probeALPN marks a ClientHello as the probe's.
const probeALPN = "forge-bench-probe"

// answerProbe reads the first TLS record from c. A probe's is answered
// (probe true); anything else is handed back as a conn that replays it.
func answerProbe(c net.Conn) (net.Conn, bool) {
	head := make([]byte, 5)
	if _, err := io.ReadFull(c, head); err != nil {
		return c, true // nothing to serve
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return c, true
	}
	if bytes.Contains(body, []byte(probeALPN)) {
		c.Write([]byte{22, 3, 3, 0, 0})
		return c, true
	}
	return &replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(append(head, body...)), c)}, false
}

// replayConn is a conn whose first bytes were already read.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// recordClientHello returns the first flight a crypto/tls client with cfg
// writes.
func recordClientHello(b *testing.B, cfg *tls.Config) []byte {
	b.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		defer client.Close()
		_ = tls.Client(client, cfg).Handshake() // fails once the pipe closes
	}()
	buf := make([]byte, 16<<10)
	n, err := server.Read(buf)
	if err != nil {
		b.Fatalf("record ClientHello: %v", err)
	}
	if n < 5 || buf[0] != 22 {
		b.Fatalf("record ClientHello: not a handshake record (%d bytes)", n)
	}
	// One record: its header says how long it is.
	want := 5 + (int(buf[3])<<8 | int(buf[4]))
	for n < want {
		m, err := server.Read(buf[n:])
		if err != nil {
			b.Fatalf("record ClientHello: %v", err)
		}
		n += m
	}
	return append([]byte(nil), buf[:want]...)
}

// probeOnce connects to addr, writes hello in one write, and returns the
// time to the first byte of the answer.
func probeOnce(addr string, hello []byte) (time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// A path that never answers fails the benchmark instead of hanging it.
	if err := c.SetDeadline(start.Add(5 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := c.Write(hello); err != nil {
		return 0, err
	}
	one := make([]byte, 1)
	if _, err := c.Read(one); err != nil {
		return 0, err
	}
	if one[0] != 22 {
		return 0, errors.New("the answer is not a TLS handshake record (denied?)")
	}
	return time.Since(start), nil
}

func (d agentDialer) probeOnce(addr string, hello []byte) (time.Duration, error) {
	var took time.Duration
	err := d.do(func() (err error) {
		took, err = probeOnce(addr, hello)
		return err
	})
	return took, err
}

// BenchmarkFastPathClientHello: connect + ClientHello + first answer byte,
// c=1, direct vs the kernel verdict path vs HAProxy vs the proxy engine,
// interleaved.
func BenchmarkFastPathClientHello(b *testing.B) {
	bed := newKpathBed(b)
	hello := recordClientHello(b, &tls.Config{ServerName: "allowed.test", NextProtos: []string{probeALPN}, RootCAs: testpki.Pool(b)})
	benchOneAtATime(b, bed, func(d agentDialer, addr string) (time.Duration, error) { return d.probeOnce(addr, hello) })
}
