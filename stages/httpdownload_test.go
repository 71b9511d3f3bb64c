package stages

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestHTTPLargeBodyThenUpgrade: a large download is spliced through the
// answer tracker (direct), which still finds the next answer: a 101 to the
// next request on the same connection turns the relay opaque.
func TestHTTPLargeBodyThenUpgrade(t *testing.T) {
	const size = 3<<20 + 17
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		s, err := ln.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		br := bufio.NewReader(s)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprintf(s, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		s.Write(bytes.Repeat([]byte("d"), size))
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(s, br)
	}()
	h := newHarness(t, false, map[uint16]string{80: ln.Addr().String()})
	h.to(worldIP, 80)
	c, br := dialEngine(t, h)
	io.WriteString(c, getAllowed)
	if n, err := readResponse(br, false); err != nil || n != 200 {
		t.Fatalf("download: %d %v", n, err)
	}
	io.WriteString(c, wsUpgrade)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade answer %v %v", resp, err)
	}
	io.WriteString(c, wsFrame)
	got := make([]byte, len(wsFrame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != wsFrame {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Close()
	ev := h.events(1)[0]
	checkEvent(t, ev, map[string]any{"msg": "egress_allowed", "bytes_up": float64(len(getAllowed) + len(wsUpgrade) + len(wsFrame))})
	if down := ev["bytes_down"].(float64); down < size {
		t.Errorf("bytes_down %v, want more than %d", down, size)
	}
}
