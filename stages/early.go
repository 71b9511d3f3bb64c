package stages

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/forge/forge-supervisor/bufpool"
	"github.com/forge/forge-supervisor/conn"
	"github.com/forge/forge-supervisor/policy"
)

// A server-speaks-first protocol (SSH, SMTP, a database) sends nothing from
// the client until the server's banner arrived, so waiting for the client's
// first bytes before dialling costs the whole ClassifyTimeout (issue #15).
// When the policy allows the destination without any name — an allowed_tcp
// address, a learned address on a non-web port, an allowed CIDR, dev-open —
// the upstream is dialled at once, before classification, and its bytes
// are relayed to the client while classification waits for the client's.
// Nothing of the client's goes upstream before the verdict: classification
// and the policy stage run exactly as before, and a name the client does
// claim (an SNI on a shared address) is still judged and may deny.

// earlyPump relays the upstream's first bytes to the client while the
// connection is being classified.
type earlyPump struct {
	c       *conn.Conn
	stopped atomic.Bool
	done    chan struct{}
	n       int64 // bytes written to the client
	err     error // why the pump ended early (not a stop)
	bufs    *bufpool.Buffers
	idle    time.Duration
}

// nameless reports whether the policy allows c's destination with no name
// at all: then a silent client would be allowed anyway, and the upstream
// may be dialled before the client spoke.
func (e *Engine) nameless(c *conn.Conn) bool {
	p := e.cfg.Policy.Load()
	if p.NeedsProcess() {
		// The verdict depends on who asks (identity.go): no early dial.
		return false
	}
	return p.Decide(context.Background(), policy.Request{IP: c.Dst.Addr(), Port: c.Dst.Port()}, e.cfg.Resolver).Allow
}

// dialEarly dials c's upstream when the decision needs no name and starts
// relaying the upstream's bytes to the client. It returns nil when it did
// not dial (a dial failure is left to the dial stage, which reports it).
func (e *Engine) dialEarly(c *conn.Conn) *earlyPump {
	if !e.nameless(c) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DialTimeout)
	up, err := e.cfg.DialUpstream(ctx, c.Dst)
	cancel()
	if err != nil {
		return nil
	}
	_ = up.SetNoDelay(true)
	c.Upstream = up
	p := &earlyPump{c: c, done: make(chan struct{}), bufs: e.bufs, idle: e.cfg.IdleTimeout}
	go p.run()
	return p
}

// run copies upstream → client until stopped or either side fails.
func (p *earlyPump) run() {
	defer close(p.done)
	bp := p.bufs.Get()
	defer p.bufs.Put(bp)
	buf := *bp
	for {
		n, err := p.c.Upstream.Read(buf)
		if n > 0 {
			_ = p.c.Client.SetWriteDeadline(time.Now().Add(p.idle))
			w, werr := p.c.Client.Write(buf[:n])
			p.n += int64(w)
			if werr != nil {
				p.err = werr
				return
			}
		}
		if err != nil {
			if !(p.stopped.Load() && errors.Is(err, os.ErrDeadlineExceeded)) {
				p.err = err
			}
			return
		}
	}
}

// stop ends the pump once classification is done and hands the upstream
// on: the relay (or the deny stage) takes over both sockets. A pump still
// writing to a client that does not read is cut after denyWriteTimeout.
func (p *earlyPump) stop() {
	p.stopped.Store(true)
	_ = p.c.Upstream.SetReadDeadline(time.Unix(1, 0))
	select {
	case <-p.done:
	case <-time.After(denyWriteTimeout):
		_ = p.c.Client.SetWriteDeadline(time.Unix(1, 0))
		<-p.done
	}
	_ = p.c.Upstream.SetReadDeadline(time.Time{})
	_ = p.c.Client.SetWriteDeadline(time.Time{})
	p.c.BytesDown += p.n
}

// failed reports whether the relay cannot go on from where the pump
// stopped: the client stopped reading or a socket failed. The upstream
// closing (EOF) is no failure: the relay sees it again.
func (p *earlyPump) failed() bool {
	return p.err != nil && !errors.Is(p.err, io.EOF)
}
