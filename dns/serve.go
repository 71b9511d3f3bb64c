package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

const (
	// maxQuerySize is the UDP read buffer for the agent's queries. A query
	// is one question plus an OPT record: a few hundred bytes at most; a
	// larger datagram is cut and then fails to parse.
	maxQuerySize = 4096
	// maxTCPConns bounds the agent's concurrent TCP connections to the
	// proxy; further connects wait in the kernel's backlog.
	maxTCPConns = 256
	// shutdownGrace is how long Serve waits for in-flight queries after
	// its context ends. Upstream waits are cut at once, so handlers only
	// have their reply left to write.
	shutdownGrace = 2 * time.Second
	// portPickTries bounds the search for a port free on both UDP and TCP
	// when Config.Port is 0.
	portPickTries = 16
)

// defaultListenAddrs are where the DNS proxy listens when Config names
// none: loopback only. The nft redirect of the agent's port-53 traffic is
// in the OUTPUT hook, where REDIRECT rewrites the destination to 127.0.0.1
// (IPv4) or ::1 (IPv6), so redirected queries arrive there; nothing
// outside the pod can reach a loopback socket.
func defaultListenAddrs() []string { return []string{"127.0.0.1", "::1"} }

type listeners struct {
	udp  []*net.UDPConn
	tcp  []net.Listener
	port uint16
}

func (l *listeners) close() {
	for _, c := range l.udp {
		c.Close()
	}
	for _, c := range l.tcp {
		c.Close()
	}
}

// Listen binds a UDP and a TCP socket on each listen address at one port
// (Config.Port, or one free on all of them). An IPv6 address is skipped
// where the kernel has no IPv6. Binding before Serve makes a port in use a
// startup error, before the agent starts.
func (p *Proxy) Listen() error {
	if len(p.sockets.udp) > 0 {
		return errors.New("dns: Listen called twice")
	}
	if p.cfg.Port != 0 {
		ls, err := p.bindAll(p.cfg.Port)
		if err != nil {
			return err
		}
		p.sockets = ls
		return nil
	}
	var lastErr error
	for range portPickTries {
		ls, err := p.bindAll(0)
		if err == nil {
			p.sockets = ls
			return nil
		}
		lastErr = err
	}
	return fmt.Errorf("dns: no port free on every listen address: %w", lastErr)
}

// bindAll binds UDP and TCP on every listen address at port; port 0 takes
// the port the first TCP socket got.
func (p *Proxy) bindAll(port uint16) (listeners, error) {
	var ls listeners
	for _, a := range p.cfg.ListenAddrs {
		udp, tcp, err := bindBoth(a, port)
		if errors.Is(err, errNoIPv6) {
			p.log.Warn("dns: no IPv6 on this host; not listening on " + a)
			continue
		}
		if err != nil {
			ls.close()
			return listeners{}, err
		}
		port = uint16(tcp.Addr().(*net.TCPAddr).Port)
		ls.udp, ls.tcp = append(ls.udp, udp), append(ls.tcp, tcp)
	}
	if len(ls.udp) == 0 {
		return listeners{}, fmt.Errorf("dns: no listen address could be bound (%v)", p.cfg.ListenAddrs)
	}
	ls.port = port
	return ls, nil
}

// errNoIPv6: the kernel has no IPv6 (or no ::1), so an IPv6 listen address
// cannot be bound.
var errNoIPv6 = errors.New("no IPv6")

func bindBoth(ip string, port uint16) (*net.UDPConn, net.Listener, error) {
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	v6 := strings.Contains(ip, ":")
	tcpNet, udpNet := "tcp4", "udp4"
	if v6 {
		tcpNet, udpNet = "tcp6", "udp6"
	}
	tcp, err := net.Listen(tcpNet, addr)
	if err != nil {
		if v6 && (errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT)) {
			return nil, nil, errNoIPv6
		}
		return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", addr, err)
	}
	// The UDP socket takes the TCP socket's port (the one picked when
	// port is 0).
	addr = net.JoinHostPort(ip, strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port))
	pc, err := net.ListenPacket(udpNet, addr)
	if err != nil {
		tcp.Close()
		return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), tcp, nil
}

// Port returns the port Listen bound (0 before Listen).
func (p *Proxy) Port() uint16 { return p.sockets.port }

// Addrs returns the bound UDP addresses (one per listen address).
func (p *Proxy) Addrs() []net.Addr {
	out := make([]net.Addr, 0, len(p.sockets.udp))
	for _, c := range p.sockets.udp {
		out = append(out, c.LocalAddr())
	}
	return out
}

// Serve answers queries on the sockets bound by Listen until ctx ends, then
// shuts every server down and returns once every server goroutine and
// in-flight query has finished. It returns nil after a clean shutdown and
// the first server error otherwise.
func (p *Proxy) Serve(ctx context.Context) error {
	if len(p.sockets.udp) == 0 {
		return errors.New("dns: Serve before Listen")
	}
	if !p.serving.CompareAndSwap(false, true) {
		return errors.New("dns: Serve called twice")
	}
	defer p.endLife()
	defer p.sockets.close()
	defer p.fwd.close()

	n := len(p.sockets.udp) + len(p.sockets.tcp)
	ended := make(chan error, n)
	for _, udp := range p.sockets.udp {
		go func() { ended <- p.serveUDP(udp) }()
	}
	// TCP is rare (truncated answers, zone-sized records): miekg's server,
	// a goroutine per connection, is fine there. Connections from
	// addresses that are not the host's are closed at accept.
	var servers []*tcpServer
	for _, l := range p.sockets.tcp {
		l = &localListener{Listener: l, local: p.local, drop: func(a net.Addr) { p.nonLocal(clientAddr(a)) }}
		srv := &tcpServer{
			Server:  p.newServer(&dns.Server{Listener: netutil.LimitListener(l, maxTCPConns)}),
			started: make(chan struct{}), finished: make(chan struct{}),
		}
		srv.NotifyStartedFunc = sync.OnceFunc(func() { close(srv.started) })
		servers = append(servers, srv)
		go func() { err := srv.ActivateAndServe(); close(srv.finished); ended <- err }()
	}
	p.log.Info("dns proxy serving", zap.Uint16("port", p.sockets.port), zap.Stringers("addrs", addrStringers(p.Addrs())), zap.Strings("upstreams", p.cfg.Upstreams))

	var errs []error
	select {
	case <-ctx.Done():
	case err := <-ended:
		errs, n = append(errs, err), n-1
	}
	// Cut upstream waits, then stop every server: the cut read deadline
	// ends the UDP readers once their current query is answered (SERVFAIL
	// if it was waiting upstream); the sockets close on return.
	p.endLife()
	p.fwd.close()
	for _, udp := range p.sockets.udp {
		_ = udp.SetReadDeadline(time.Unix(1, 0)) // cannot fail on an open socket; a closed one has no readers left
	}
	for _, srv := range servers {
		srv.stop()
	}
	for ; n > 0; n-- {
		errs = append(errs, <-ended)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dns: server stopped: %w", err)
	}
	if ctx.Err() == nil {
		return errors.New("dns: server stopped unexpectedly")
	}
	return nil
}

// tcpServer is one of miekg's TCP servers with what Serve needs to stop it.
type tcpServer struct {
	*dns.Server
	started, finished chan struct{}
}

// stop shuts the server down once it has started (a server that ended
// already needs nothing).
func (s *tcpServer) stop() {
	select {
	case <-s.finished:
		return
	case <-s.started:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = s.ShutdownContext(sctx) // a failure to stop shows as its serve error
	cancel()
}

func addrStringers(as []net.Addr) []fmt.Stringer {
	out := make([]fmt.Stringer, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}

func (p *Proxy) newServer(srv *dns.Server) *dns.Server {
	srv.Handler = p
	srv.UDPSize = maxQuerySize
	srv.MsgAcceptFunc = p.accept
	srv.MsgInvalidFunc = p.invalid
	return srv
}
