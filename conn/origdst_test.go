package conn_test

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/tests/netenv"
	"golang.org/x/sys/unix"
)

// redirectRules send the agent namespace's own TCP to ports 80 and 8080
// (IPv4 and IPv6) to local listeners, as the supervisor's ruleset does.
const redirectRules = `
table ip t {
	chain out {
		type nat hook output priority -100;
		tcp dport 80 redirect to :15999
		tcp dport 8080 redirect to :15998
	}
}
table ip6 t {
	chain out {
		type nat hook output priority -100;
		tcp dport 80 redirect to :15999
		tcp dport 8080 redirect to :15998
	}
}
`

func TestOriginalDst(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft CLI (installed by .ci/run)")
	}
	p := netenv.NewPair(t)
	nft := p.Agent.Cmd("nft", "-f", "-")
	nft.Stdin = strings.NewReader(redirectRules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}

	// Port 15999: one dual-stack listener, so IPv4 clients arrive as
	// v4-mapped peers on an IPv6 socket. Port 15998: separate tcp4 and
	// tcp6 listeners.
	listeners := map[string]*net.TCPListener{}
	err := p.Agent.Do(func() error {
		for _, l := range []struct{ key, network, addr string }{
			{"dual", "tcp", ":15999"}, {"v4", "tcp4", "0.0.0.0:15998"}, {"v6", "tcp6", "[::]:15998"},
		} {
			ln, err := net.Listen(l.network, l.addr)
			if err != nil {
				return err
			}
			listeners[l.key] = ln.(*net.TCPListener)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range listeners {
		t.Cleanup(func() { _ = ln.Close() })
	}

	tests := []struct {
		name     string
		listener string
		dst      netip.AddrPort
	}{
		{"IPv4 on dual-stack socket", "dual", netip.AddrPortFrom(netenv.WorldV4, 80)},
		{"IPv6 on dual-stack socket", "dual", netip.AddrPortFrom(netenv.WorldV6, 80)},
		{"IPv4 on tcp4 socket", "v4", netip.AddrPortFrom(netenv.World2V4, 8080)},
		{"IPv6 on tcp6 socket", "v6", netip.AddrPortFrom(netenv.World2V6, 8080)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var client net.Conn
			if err := p.Agent.Do(func() (err error) {
				client, err = net.Dial("tcp", tc.dst.String())
				return err
			}); err != nil {
				t.Fatalf("dial %s: %v", tc.dst, err)
			}
			defer client.Close()
			srv, err := listeners[tc.listener].AcceptTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if srv.RemoteAddr().(*net.TCPAddr).Port != client.LocalAddr().(*net.TCPAddr).Port {
				t.Fatalf("accepted %s, dialled from %s", srv.RemoteAddr(), client.LocalAddr())
			}
			got, err := conn.OriginalDst(srv)
			if err != nil {
				t.Fatalf("OriginalDst: %v", err)
			}
			if got != tc.dst {
				t.Fatalf("OriginalDst = %s, want %s (socket local %s)", got, tc.dst, srv.LocalAddr())
			}
		})
	}

	t.Run("closed connection", func(t *testing.T) {
		var client net.Conn
		if err := p.Agent.Do(func() (err error) {
			client, err = net.Dial("tcp", netip.AddrPortFrom(netenv.WorldV4, 80).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		srv, err := listeners["dual"].AcceptTCP()
		if err != nil {
			t.Fatal(err)
		}
		_ = srv.Close()
		if got, err := conn.OriginalDst(srv); err == nil {
			t.Fatalf("OriginalDst on a closed socket = %s, want an error", got)
		}
	})
}

// TestOriginalDstUntracked checks a connection conntrack never saw (a
// fresh namespace with no NAT rules does not track at all): OriginalDst
// must fail with the kernel's ENOENT and name the syscall, never invent an
// address.
func TestOriginalDstUntracked(t *testing.T) {
	p := netenv.NewPair(t)
	var ln net.Listener
	var client net.Conn
	if err := p.Agent.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		client, err = net.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer client.Close()
	srv, err := ln.(*net.TCPListener).AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got, err := conn.OriginalDst(srv)
	if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "getsockopt(SOL_IP, SO_ORIGINAL_DST)") {
		t.Fatalf("OriginalDst = %s, %v; want ENOENT from getsockopt(SOL_IP, SO_ORIGINAL_DST)", got, err)
	}
}
