package netenv

import (
	"net"
	"testing"
)

// TestPairConnects checks the harness itself: the agent reaches the world
// over IPv4 and IPv6, and nothing else is routed.
func TestPairConnects(t *testing.T) {
	p := NewPair(t)
	var ln net.Listener
	if err := p.World.Do(func() (err error) {
		ln, err = net.Listen("tcp", "[::]:7")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, dst := range []string{"198.51.100.1:7", "[2001:db8::1]:7", "198.51.100.3:7"} {
		if err := p.Agent.Do(func() error {
			c, err := net.Dial("tcp", dst)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			t.Errorf("dial %s from agent: %v", dst, err)
		}
	}
}
