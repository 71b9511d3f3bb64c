package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"time"
)

// HTTP framing vectors of issue #11 (items 4–6): requests a lenient
// server (Python's http.server, Node) would serve for a host the policy
// never judged.

// smuggledHead is the request for a denied host that each vector hides.
const smuggledHead = "GET /%s HTTP/1.1\r\nHost: %s.evil.test\r\n\r\n"

// cl0 sends a bodiless-method request to allowed.test whose
// Content-Length body is a complete request for a denied name: a server
// that does not read such bodies serves it as the next request (CL.0).
func cl0(method string) vectorFunc {
	return func(r *Result) {
		inner := fill(r, smuggledHead)
		head := fmt.Sprintf("%s /ctl HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n", method, len(inner))
		send(r, worldV4, 80, []byte(head+inner))
	}
}

// refusedUpgrade asks allowed.test to upgrade to WebSocket (the world
// answers 200, not 101), then sends a request for a denied name behind a
// prefix byte that is not an HTTP token: a gate that takes the byte for a
// WebSocket frame relays it unjudged, and Python strips it as whitespace.
func refusedUpgrade(prefix string) vectorFunc {
	return func(r *Result) {
		c, err := dialFlow(r, worldV4, 80)
		if err != nil {
			r.note("connect: %v", err)
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(ioWindow))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			r.Observed = "error"
			r.note("upgrade answer: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			r.Observed = "error"
			r.note("the world accepted the upgrade")
			return
		}
		r.note("upgrade answer: %d %q", resp.StatusCode, clip(body))
		_, _ = c.Write([]byte(prefix + fill(r, smuggledHead)))
		rest, err := readAll(br)
		judge(r, rest, err)
	}
}
