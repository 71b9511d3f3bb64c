package kverdict

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/nft"
	"github.com/forge/forge-supervisor/policy"
)

// Heartbeat timing: the alive element lives aliveTTL and is renewed every
// beatEvery while the worker's loop turns. A supervisor killed or stalled
// stops renewing it, and within aliveTTL new flows go to the proxy (which,
// dead too, refuses them) and pending flows are reset, not left hanging.
const (
	beatEvery = time.Second
	aliveTTL  = 3 * time.Second
	// stallAfter: a worker loop that has not turned for this long is
	// stalled; the heartbeat stops.
	stallAfter = 2 * time.Second
)

// Bounds of the set writer.
const (
	// learnBacklog is how many learned answers may wait to be written. The
	// DNS proxy never waits for the sets: past this an answer is dropped,
	// which costs that destination the fast path, never safety.
	learnBacklog = 4096
	// maxTracked bounds the elements whose timeouts the writer tracks
	// (about 80 bytes each).
	maxTracked = 1 << 16
	// refreshSlack: an element is rewritten only when a new answer extends
	// it by more than this, so a busy name costs no netlink traffic.
	refreshSlack = 5 * time.Second
	// deleteMargin: an element is replaced (delete + add) only when it has
	// at least this long to live, so the delete never races its expiry.
	deleteMargin = time.Second
)

type learned struct {
	name string
	ip   netip.Addr
	ttl  time.Duration
}

type elemKey struct {
	dst  netip.AddrPort
	open bool
}

// setWriter owns the netlink connection to the fast sets: it writes what
// the DNS proxy learned, renews the heartbeat, and rebuilds the sets on a
// policy reload.
type setWriter struct {
	cfg     *Config
	sets    *nft.FastSets
	m       *Metrics
	beat    *atomic.Int64
	learnCh <-chan learned
	reload  chan struct{}
	expiry  map[elemKey]time.Time
}

// start writes the policy's sets and the first heartbeat: Open calls it,
// so the fast path is live before the agent's first connection.
func (w *setWriter) start() {
	w.rebuild()
	w.heartbeat()
}

func (w *setWriter) run(ctx context.Context) error {
	defer w.sets.Close()
	tick := time.NewTicker(beatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// New flows go to the proxy and pending ones are reset from
			// now on; the table itself is removed by the caller.
			if err := w.sets.Stop(); err != nil {
				w.cfg.Log.Warn("kverdict_stop_failed", zap.Error(err))
			}
			return nil
		case <-tick.C:
			w.heartbeat()
		case <-w.reload:
			w.rebuild()
		case l := <-w.learnCh:
			batch := []learned{l}
		more:
			for len(batch) < 256 {
				select {
				case l := <-w.learnCh:
					batch = append(batch, l)
				default:
					break more
				}
			}
			w.write(batch)
		}
	}
}

// heartbeat renews the alive element while the worker's loop turns.
func (w *setWriter) heartbeat() {
	if time.Since(time.Unix(0, w.beat.Load())) > stallAfter {
		w.cfg.Log.Warn("kverdict_worker_stalled", zap.String("effect", "fast path closes: new flows take the proxy, pending flows are reset"))
		return
	}
	if err := w.sets.Heartbeat(aliveTTL); err != nil {
		w.cfg.Log.Warn("kverdict_heartbeat_failed", zap.Error(err))
	}
}

// rebuild empties the sets and writes the policy's address rules: after a
// reload nothing the old policy let onto the fast path stays there.
func (w *setWriter) rebuild() {
	if err := w.sets.Clear(); err != nil {
		w.cfg.Log.Error("kverdict_sets_clear_failed", zap.Error(err))
		return
	}
	clear(w.expiry)
	p := w.cfg.Policy.Load()
	if p.NeedsProcess() {
		// The decision needs the connecting process, which only the proxy
		// looks up: every connection takes it.
		return
	}
	var add []nft.FastElem
	for _, dst := range p.AddrRules() {
		// Only what Decide allows on the address alone, whatever the
		// stream says, is allowed at the SYN.
		v := p.Decide(context.Background(), policy.Request{IP: dst.Addr(), Port: dst.Port()}, nil)
		if v.Allow && v.Reason == policy.ReasonAllowedTCP {
			add = append(add, nft.FastElem{Dst: dst, Open: true})
		}
	}
	if len(add) == 0 {
		return
	}
	if err := w.sets.Update(nil, add); err != nil {
		w.cfg.Log.Error("kverdict_sets_write_failed", zap.Error(err))
		return
	}
	w.m.learned.WithLabelValues("open").Add(float64(len(add)))
}

// fastPorts are the ports a learned name's flows may take the fast path
// on: TLS (443), and the standard ports of protocols that are not
// HTTP/1.x. Cleartext HTTP must take the proxy, which checks every request
// of a kept-alive connection (the kernel path could check only the first
// and denies it, http_needs_proxy), and on any other port it is common
// (dev servers on 8000, 3000, 8080…): those ports keep the proxy.
var fastPorts = map[uint16]bool{
	443:   true, // HTTPS
	22:    true, // SSH
	25:    true, // SMTP
	465:   true, // SMTPS
	587:   true, // SMTP submission
	993:   true, // IMAPS
	995:   true, // POP3S
	3306:  true, // MySQL
	5432:  true, // PostgreSQL
	6379:  true, // Redis
	9418:  true, // git://
	11211: true, // memcached
	27017: true, // MongoDB
}

// write turns learned answers into tls-set elements: every port in
// fastPorts that the policy opens for the name.
func (w *setWriter) write(batch []learned) {
	p := w.cfg.Policy.Load()
	if p.NeedsProcess() {
		return // see rebuild
	}
	now := time.Now()
	var del, add []nft.FastElem
	for _, l := range batch {
		ports, _ := p.PortsFor(l.name)
		for _, port := range ports {
			if !fastPorts[port] || !p.CheckName(l.name, port).Allow {
				continue
			}
			k := elemKey{dst: netip.AddrPortFrom(l.ip.Unmap(), port)}
			ttl := max(l.ttl, w.cfg.MinTTL)
			until := now.Add(ttl)
			old, have := w.expiry[k]
			if have && !until.After(old.Add(refreshSlack)) {
				continue
			}
			if !have && len(w.expiry) >= maxTracked {
				w.prune(now)
				if len(w.expiry) >= maxTracked {
					continue
				}
			}
			e := nft.FastElem{Dst: k.dst, Timeout: ttl}
			if have && old.Sub(now) > deleteMargin {
				del = append(del, e)
			}
			add = append(add, e)
			w.expiry[k] = until
		}
	}
	if len(add) == 0 {
		return
	}
	if err := w.sets.Update(del, add); err != nil {
		// A delete that raced an expiry fails the batch: add alone (an
		// element still present keeps its shorter life).
		if err := w.sets.Update(nil, add); err != nil {
			w.cfg.Log.Warn("kverdict_sets_write_failed", zap.Error(err))
			return
		}
	}
	w.m.learned.WithLabelValues("tls").Add(float64(len(add)))
}

func (w *setWriter) prune(now time.Time) {
	for k, t := range w.expiry {
		if now.After(t) {
			delete(w.expiry, k)
		}
	}
}
