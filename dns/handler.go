package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"

	"github.com/forge/forge-supervisor/obs"
)

const (
	// anyAnswerTTL is the TTL of the RFC 8482 answer to ANY: it never
	// changes, so clients may keep it long.
	anyAnswerTTL = 3600
	// ednsSize is the UDP payload size the proxy advertises in answers it
	// makes itself (the DNS flag day 2020 value).
	ednsSize = 1232
)

// accept screens a query's header before the server unpacks the rest:
// responses are dropped, anything but a standard query is NOTIMP, and a
// query must carry exactly one question and no answer or authority records
// (at most an OPT and a signature in the additional section).
func (p *Proxy) accept(h dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		p.malformed("response sent as a query")
		return dns.MsgIgnore
	}
	if h.Qdcount != 1 || h.Ancount != 0 || h.Nscount != 0 || h.Arcount > 2 {
		p.malformed("bad section counts")
		return dns.MsgReject
	}
	if opcode := int(h.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	return dns.MsgAccept
}

// invalid counts a packet that did not unpack.
func (p *Proxy) invalid(_ []byte, err error) {
	p.malformed(err.Error())
}

func (p *Proxy) malformed(why string) {
	if f := p.cfg.Hooks.Malformed; f != nil {
		f()
	}
	p.log.Debug("dns: malformed query", zap.String("error", why))
}

// replier sends one reply, in wire form, to the agent that asked.
type replier interface {
	sendReply(b []byte) error
	// scratch returns buffers the query may use while forwarding: one of
	// maxQuerySize bytes for the packed query and one of maxUpstreamMsg
	// for the answer, or nils to take them from the proxy's pools.
	scratch() (query, answer []byte)
}

// responseReplier adapts miekg's ResponseWriter (which frames TCP).
type responseReplier struct{ w dns.ResponseWriter }

func (r *responseReplier) sendReply(b []byte) error {
	_, err := r.w.Write(b)
	return err
}

func (r *responseReplier) scratch() (query, answer []byte) { return nil, nil }

// ServeDNS answers one query: screen it, decide it against the current
// policy, then refuse it or forward it and learn the answer. Every query
// that reaches the decision gets exactly one audit line. The proxy's own
// UDP readers call handle directly; miekg's server calls this for TCP.
func (p *Proxy) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	p.handle(req, clientAddr(w.RemoteAddr()), isTCP(w.RemoteAddr()), &responseReplier{w})
}

// handle is ServeDNS over any transport.
func (p *Proxy) handle(req *dns.Msg, client netip.AddrPort, overTCP bool, out replier) {
	start := time.Now()
	// The servers screen with accept; this repeats the checks for callers
	// that hand the handler a message directly.
	if req.Response || len(req.Question) != 1 {
		p.malformed("not a single-question query")
		return
	}
	if req.Opcode != dns.OpcodeQuery {
		p.reply(out, req, overTCP, errorReply(req, dns.RcodeNotImplemented))
		return
	}
	q := req.Question[0]
	qtype := typeString(q.Qtype)
	if p.limiter != nil && !p.allowRate(out, client, req, overTCP, qtype) {
		return
	}

	ev := obs.DNSQuery{QName: q.Name, QType: qtype}
	setSource(&ev, client)
	defer func() {
		ev.Duration = time.Since(start)
		p.audit.DNS(ev)
	}()
	pol := p.current()
	proc := p.identify(pol, client, overTCP, &ev)

	if q.Qclass != dns.ClassINET || unsupportedType(q.Qtype) {
		ev.Reason = ReasonUnsupported
		ev.Rcode = p.reply(out, req, overTCP, withEDE(errorReply(req, dns.RcodeNotImplemented), dns.ExtendedErrorCodeNotSupported, ReasonUnsupported))
		return
	}

	name, v := decide(pol, q.Name, p.limits, proc, p.guard)
	if name != "" {
		ev.QName = name
	}
	ev.Reason, ev.Rule = v.Reason, v.Rule
	switch {
	case v.Allow:
		ev.Allowed = true
	case p.cfg.DryRun:
		ev.Allowed, ev.WouldDeny = true, true
	default:
		ev.Rcode = p.reply(out, req, overTCP, denyReply(req, p.cfg.DenyRcode, v.Reason))
		return
	}

	if q.Qtype == dns.TypeANY {
		ev.Rcode = p.reply(out, req, overTCP, anyReply(req))
		return
	}
	p.answer(out, req, overTCP, name, v.Allow, &ev)
}

// keyable reports whether name (as decide returned it) names one question
// only, so that answers may be shared under it: an allowed name always
// does; in a dry run a would-deny name does when it is a valid hostname
// (a name that failed to normalize, or no policy, gives no usable key).
func keyable(name string, allowed bool) bool {
	return allowed || withinRFCLimits(name)
}

// answer answers an allowed query (or a dry run's would-deny) from the
// answer cache, or else by forwarding it upstream, once for all identical
// questions asked meanwhile, and learns the answer's addresses when the
// policy allowed the name (not in a dry run's would-deny). It fills in the
// rcode sent, how many addresses were learned, whether the answer came
// from the cache, and the reason when no upstream gave a usable answer
// (the agent then gets SERVFAIL).
func (p *Proxy) answer(out replier, req *dns.Msg, overTCP bool, name string, learn bool, ev *obs.DNSQuery) {
	qbuf, abuf := out.scratch()
	if qbuf == nil || abuf == nil {
		qbufp, abufp := p.qbufs.Get(), p.abufs.Get()
		defer p.qbufs.Put(qbufp)
		defer p.abufs.Put(abufp)
		qbuf, abuf = *qbufp, *abufp
	}
	key := keyOf(name, req)
	if !keyable(name, learn) {
		// A dry run's would-deny for a name without a key: forwarded
		// alone, never cached.
		p.answerFetched(out, req, overTCP, name, false, ev, p.fetch(req, overTCP, key, qbuf, abuf, false), abuf)
		return
	}
	e, age, ok := p.answers.get(key)
	if p.answers != nil {
		p.cacheLookup(ok)
	}
	if !ok {
		// Only allowed names' answers are kept (a dry run's would-deny
		// is answered from the cache, but never fills it).
		res := p.flights.do(key, func() flightResult { return p.fetch(req, overTCP, key, qbuf, abuf, learn) })
		p.answerFetched(out, req, overTCP, name, learn, ev, res, abuf)
		return
	}
	ev.Cached = true
	if learn {
		ev.Answers = p.learn(name, e.addrsAged(age))
	}
	ev.Rcode = p.relay(out, req, overTCP, e.copyAnswer(abuf, age), e.rcode)
}

// answerFetched answers with what a fetch got: its answer (copied into
// abuf, the caller's own buffer), or SERVFAIL when it failed.
func (p *Proxy) answerFetched(out replier, req *dns.Msg, overTCP bool, name string, learn bool, ev *obs.DNSQuery, res flightResult, abuf []byte) {
	if res.err != nil {
		ev.Reason = ReasonUpstreamFailed
		if errors.Is(res.err, errOverloaded) {
			ev.Allowed, ev.Reason = false, ReasonOverloaded
		}
		p.log.Debug("dns: forward failed", zap.String("qname", name), zap.Error(res.err))
		ev.Rcode = p.reply(out, req, overTCP, withEDE(errorReply(req, dns.RcodeServerFailure), dns.ExtendedErrorCodeNetworkError, ev.Reason))
		return
	}
	if learn {
		ev.Answers = p.learn(name, res.addrs)
	}
	ev.Rcode = p.relay(out, req, overTCP, abuf[:copy(abuf, res.msg)], res.rcode)
}

// errOverloaded: too many queries are being forwarded already.
var errOverloaded = errors.New("dns: too many queries in flight")

// fetch forwards req upstream (the leader of its flight) and returns the
// answer, with ECH configs stripped, as bytes of its own that nobody
// changes later, and when store is set keeps it in the answer cache if it
// may be cached. qbuf and abuf are the caller's scratch buffers.
func (p *Proxy) fetch(req *dns.Msg, overTCP bool, key answerKey, qbuf, abuf []byte, store bool) flightResult {
	select {
	case p.inflight <- struct{}{}:
		defer func() { <-p.inflight }()
	default:
		return flightResult{err: errOverloaded}
	}
	var rrs [stackRRs]rrRef
	query, err := req.PackBuffer(qbuf)
	if err != nil {
		return flightResult{err: fmt.Errorf("dns: pack query: %w", err)}
	}
	msg, a, err := p.fwd.exchange(p.life, query, overTCP, abuf, rrs[:])
	if err != nil {
		return flightResult{err: err}
	}
	var addrs []learnedAddr
	if a.rcode == dns.RcodeSuccess {
		addrs = wireChainAddrs(msg, a)
	}
	owned := append([]byte(nil), msg...)
	if a.ech {
		if owned, err = withoutECH(owned); err != nil {
			return flightResult{err: err}
		}
		if a, err = parseAnswer(owned, query, rrs[:]); err != nil {
			return flightResult{err: fmt.Errorf("dns: answer without ech: %w", err)}
		}
	}
	res := flightResult{msg: owned, rcode: a.rcode, addrs: addrs}
	if store && p.answers != nil {
		if e, ok := newCachedAnswer(key, owned, a, addrs, p.cfg.Now()); ok {
			p.answers.put(e)
			res.msg = e.msg
			if f := p.cfg.Hooks.CacheSize; f != nil {
				bytes, _ := p.answers.stats()
				f(bytes)
			}
		}
	}
	return res
}

// withoutECH repacks an answer without its ech SvcParams. miekg's
// unpacking checks every record; an answer it refuses is an error (fail
// closed: the agent gets SERVFAIL rather than an ECH config).
func withoutECH(msg []byte) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(msg); err != nil {
		return nil, fmt.Errorf("dns: unpack answer with ech: %w", err)
	}
	stripECH(m)
	m.Compress = true
	out, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("dns: repack answer without ech: %w", err)
	}
	return out, nil
}

// relay sends msg, an answer in the caller's own buffer, to the agent with
// the agent's ID and its own spelling of the question, cut to the agent's
// UDP size when it does not fit, and returns the rcode sent.
func (p *Proxy) relay(out replier, req *dns.Msg, overTCP bool, msg []byte, rcode int) string {
	binary.BigEndian.PutUint16(msg, req.Id)
	setQuestionSpelling(msg, req.Question[0].Name)
	if limit := udpLimit(req); !overTCP && len(msg) > limit {
		return p.replyCut(out, req, msg)
	}
	if err := out.sendReply(msg); err != nil {
		p.log.Debug("dns: write reply", zap.Error(err))
	}
	return rcodeString(rcode)
}

// keyOf is the answer-cache key of req, whose normalized name is name.
func keyOf(name string, req *dns.Msg) answerKey {
	k := answerKey{name: name, qtype: req.Question[0].Qtype, cd: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.edns, k.do = true, opt.Do()
	}
	return k
}

func (p *Proxy) cacheLookup(hit bool) {
	if f := p.cfg.Hooks.CacheLookup; f != nil {
		f(hit)
	}
}

// replyCut sends an upstream answer too large for the agent's UDP size cut
// to fit, with TC set. Upstreams are asked with the agent's own EDNS0 size,
// so this is rare: only then is the answer unpacked and repacked.
func (p *Proxy) replyCut(out replier, req *dns.Msg, msg []byte) string {
	resp := new(dns.Msg)
	if err := resp.Unpack(msg); err != nil {
		// parseAnswer accepted it, but miekg's unpacking checks every
		// record's data: fail closed.
		p.log.Debug("dns: upstream answer does not unpack", zap.Error(err))
		return p.reply(out, req, false, errorReply(req, dns.RcodeServerFailure))
	}
	resp.Question = req.Question
	return p.reply(out, req, false, resp)
}

// learn records addrs under the normalized name the agent asked, and
// returns how many it learned.
func (p *Proxy) learn(name string, addrs []learnedAddr) int {
	for _, a := range addrs {
		p.cache.Learn(name, a.ip, a.ttl)
	}
	p.tellLearner(name, addrs)
	if len(addrs) > 0 {
		if f := p.cfg.Hooks.Learned; f != nil {
			f(p.cache.Len())
		}
	}
	return len(addrs)
}

// udpLimit is the largest UDP reply the agent takes: 512 bytes, or its
// EDNS0 size.
func udpLimit(req *dns.Msg) int {
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
	}
	return size
}

// reply packs resp and writes it to the agent, cut to the size the agent
// can take over UDP with TC set when cut, and returns the rcode sent.
func (p *Proxy) reply(out replier, req *dns.Msg, overTCP bool, resp *dns.Msg) string {
	resp.Id = req.Id
	resp.Compress = true
	if !overTCP {
		resp.Truncate(udpLimit(req))
	}
	b, err := resp.Pack()
	if err == nil {
		err = out.sendReply(b)
	}
	if err != nil {
		p.log.Debug("dns: write reply", zap.Error(err))
	}
	return rcodeString(resp.Rcode)
}

// allowRate takes a token from the agent's bucket. When the bucket is
// empty it refuses the query; one dns_rate_limited audit line per window
// stands for all refusals in it, so a flood cannot become a flood of log
// lines, and the others are only counted (Hooks.RateLimited).
func (p *Proxy) allowRate(out replier, client netip.AddrPort, req *dns.Msg, overTCP bool, qtype string) bool {
	ok, report := p.limiter.allow(1)
	if ok {
		return true
	}
	rcode := p.reply(out, req, overTCP, withEDE(errorReply(req, dns.RcodeRefused), dns.ExtendedErrorCodeOther, obs.ReasonRateLimited))
	p.rateLimited(report, req.Question[0].Name, qtype, rcode, client)
	return false
}

// rateLimited accounts for one refusal by the rate limiter: the audit line
// when report says one is due, else the RateLimited hook.
func (p *Proxy) rateLimited(report int, qname, qtype, rcode string, client netip.AddrPort) {
	if report == 0 {
		if f := p.cfg.Hooks.RateLimited; f != nil {
			f()
		}
		return
	}
	// The same name form as every other DNS event: normalized when it
	// normalizes, else as asked (the encoder escapes it either way).
	if n, err := normalizeQName(qname); err == nil {
		qname = n
	}
	ev := obs.DNSQuery{QName: qname, QType: qtype, Rcode: rcode, Reason: obs.ReasonRateLimited}
	setSource(&ev, client)
	p.audit.DNSRateLimited(ev)
}

// setSource puts the querying client's address and port in ev (nothing
// for the supervisor's own lookups, which have no client).
func setSource(ev *obs.DNSQuery, client netip.AddrPort) {
	if client.IsValid() {
		ev.SrcIP, ev.SrcPort = client.Addr().String(), client.Port()
	}
}

// errorReply is an empty answer with rcode, mirroring the query's EDNS0.
func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, rcode)
	m.RecursionAvailable = true
	mirrorEDNS(req, m)
	return m
}

// anyReply is the RFC 8482 minimal answer to ANY: one HINFO "RFC8482".
func anyReply(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyAnswerTTL},
		Cpu: "RFC8482",
	}}
	mirrorEDNS(req, m)
	return m
}

func mirrorEDNS(req, m *dns.Msg) {
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
	}
}

// unsupportedType reports query types the proxy never forwards: zone
// transfers and the meta types that are not questions.
func unsupportedType(t uint16) bool {
	switch t {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB,
		dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeNone:
		return true
	}
	return false
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

func rcodeString(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

func isTCP(a net.Addr) bool {
	_, ok := a.(*net.TCPAddr)
	return ok
}

// clientAddr is a's address (unmapped, without a zone) and port.
func clientAddr(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
