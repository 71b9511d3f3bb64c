package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
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

type listeners struct {
	udp  net.PacketConn
	tcp  net.Listener
	port uint16
}

func (l *listeners) close() {
	if l.udp != nil {
		l.udp.Close()
	}
	if l.tcp != nil {
		l.tcp.Close()
	}
}

// Listen binds the UDP and TCP sockets on every address, IPv4 and IPv6
// (one dual-stack socket per protocol where the kernel has IPv6, IPv4 only
// where it does not). Binding before Serve makes a port in use a startup
// error, before the agent starts.
func (p *Proxy) Listen() error {
	if p.sockets.udp != nil {
		return errors.New("dns: Listen called twice")
	}
	if p.cfg.Port != 0 {
		ls, err := bindBoth(p.cfg.Port)
		if err != nil {
			return err
		}
		p.sockets = ls
		return nil
	}
	var lastErr error
	for range portPickTries {
		tcp, err := net.Listen("tcp", ":0")
		if err != nil {
			return fmt.Errorf("dns: listen tcp: %w", err)
		}
		port := uint16(tcp.Addr().(*net.TCPAddr).Port)
		udp, err := net.ListenPacket("udp", ":"+strconv.Itoa(int(port)))
		if err != nil {
			tcp.Close()
			lastErr = err
			continue
		}
		p.sockets = listeners{udp: udp, tcp: tcp, port: port}
		return nil
	}
	return fmt.Errorf("dns: no port free on both udp and tcp: %w", lastErr)
}

func bindBoth(port uint16) (listeners, error) {
	addr := ":" + strconv.Itoa(int(port))
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return listeners{}, fmt.Errorf("dns: listen udp %s: %w", addr, err)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		udp.Close()
		return listeners{}, fmt.Errorf("dns: listen tcp %s: %w", addr, err)
	}
	return listeners{udp: udp, tcp: tcp, port: port}, nil
}

// Port returns the port Listen bound (0 before Listen).
func (p *Proxy) Port() uint16 { return p.sockets.port }

// Serve answers queries on the sockets bound by Listen until ctx ends, then
// shuts both servers down and returns once every server goroutine and
// in-flight query has finished. It returns nil after a clean shutdown and
// the first server error otherwise.
func (p *Proxy) Serve(ctx context.Context) error {
	if p.sockets.udp == nil {
		return errors.New("dns: Serve before Listen")
	}
	if !p.serving.CompareAndSwap(false, true) {
		return errors.New("dns: Serve called twice")
	}
	defer p.endLife()
	defer p.sockets.close()
	defer p.fwd.close()

	udp, ok := p.sockets.udp.(*net.UDPConn)
	if !ok {
		return fmt.Errorf("dns: udp socket is a %T", p.sockets.udp)
	}
	udpEnded := make(chan error, 1)
	go func() { udpEnded <- p.serveUDP(udp) }()

	// TCP is rare (truncated answers, zone-sized records): miekg's server,
	// a goroutine per connection, is fine there.
	tcp := p.newServer(&dns.Server{Listener: netutil.LimitListener(p.sockets.tcp, maxTCPConns)})
	tcpStarted := make(chan struct{})
	tcpEnded := make(chan error, 1)
	tcp.NotifyStartedFunc = sync.OnceFunc(func() { close(tcpStarted) })
	go func() { tcpEnded <- tcp.ActivateAndServe() }()
	p.log.Info("dns proxy serving", zap.Uint16("port", p.sockets.port), zap.Strings("upstreams", p.cfg.Upstreams))

	var udpErr, tcpErr error
	udpDone, tcpDone := false, false
	select {
	case <-ctx.Done():
	case udpErr = <-udpEnded:
		udpDone = true
	case tcpErr = <-tcpEnded:
		tcpDone = true
	}
	// Cut upstream waits, then stop both servers: the cut read deadline
	// ends the UDP readers once their current query is answered (SERVFAIL
	// if it was waiting upstream); the socket closes on return.
	p.endLife()
	p.fwd.close()
	_ = udp.SetReadDeadline(time.Unix(1, 0)) // cannot fail on an open socket; a closed one has no readers left
	if !tcpDone {
		select {
		case tcpErr = <-tcpEnded:
		case <-tcpStarted:
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			_ = tcp.ShutdownContext(sctx) // a failure to stop shows as its serve error below
			cancel()
			tcpErr = <-tcpEnded
		}
	}
	if !udpDone {
		udpErr = <-udpEnded
	}
	if err := errors.Join(udpErr, tcpErr); err != nil {
		return fmt.Errorf("dns: server stopped: %w", err)
	}
	if ctx.Err() == nil {
		return errors.New("dns: server stopped unexpectedly")
	}
	return nil
}

func (p *Proxy) newServer(srv *dns.Server) *dns.Server {
	srv.Handler = p
	srv.UDPSize = maxQuerySize
	srv.MsgAcceptFunc = p.accept
	srv.MsgInvalidFunc = p.invalid
	return srv
}
