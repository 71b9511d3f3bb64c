package conn

import (
	"errors"
	"io"
)

// maxPendingRequests bounds the requests the gate may have forwarded
// before the server answered the first (pipelining). Past it the gate
// waits for answers: backpressure, not failure.
const maxPendingRequests = 64

// exchange is one request the gate forwarded, as the answer tracker needs
// it to find the end of the server's answer and to judge a switch.
type exchange struct {
	head     bool // HEAD: the answer has no body
	connect  bool // CONNECT: a 2xx answer opens a tunnel
	upgrade  bool // Upgrade: websocket: a 101 answer switches protocols
	switched chan bool
}

// Answers pairs the client's requests with the server's answers. The gate
// announces each request before a byte of it is forwarded, so the tracker
// always knows which request an answer belongs to; for a CONNECT or an
// upgrade the gate then waits for the server's verdict. A relay turns
// opaque only on a real 101 Switching Protocols (or a 2xx to CONNECT):
// a server that refused keeps the stream HTTP/1.x, gated request by
// request.
type Answers struct {
	pending chan exchange
	// done is closed when the tracker stops following the answers (the
	// server switched, closed, or sent what it cannot follow): no verdict
	// comes after that, and a gate still waiting takes it as a refusal.
	done chan struct{}
}

// NewAnswers returns the pairing of one gated connection.
func NewAnswers() *Answers {
	return &Answers{pending: make(chan exchange, maxPendingRequests), done: make(chan struct{})}
}

// announce registers req before it is forwarded. The exchange it returns
// carries the verdict channel for a request that may switch.
func (a *Answers) announce(req HTTPRequest) exchange {
	ex := exchange{head: req.Method == "HEAD", connect: req.Method == "CONNECT", upgrade: req.Upgrade != ""}
	if req.Switches() {
		ex.switched = make(chan bool, 1)
	}
	select {
	case a.pending <- ex:
	case <-a.done:
	}
	return ex
}

// await returns the server's verdict on a switching request: true only
// when the server switched.
func (a *Answers) await(ex exchange) bool {
	select {
	case ok := <-ex.switched:
		return ok
	case <-a.done:
		// The tracker sends a verdict before it stops: look once more.
		select {
		case ok := <-ex.switched:
			return ok
		default:
			return false
		}
	}
}

// AnswerTracker follows the server's side of a gated connection: it
// forwards answers to the client and tells the gate whether each CONNECT
// or upgrade was accepted. It needs no trust in the server: when it
// cannot follow (a malformed head, an answer to no request, a body that
// runs to the close) it stops judging, and every later switch is refused.
type AnswerTracker struct {
	httpStream
	log *Answers
}

// Run forwards answers until the stream ends or stops being followed. It
// returns opaque true when the rest of the server's stream is to be
// relayed as is (after a switch, or once it cannot be followed); the
// bytes read but not forwarded go with ForwardBuffered.
func (t *AnswerTracker) Run() (opaque bool, err error) {
	defer close(t.log.done)
	var ex exchange
	have := false
	for {
		resp, err := nextHead(&t.httpStream, ParseHTTPResponse)
		switch {
		case errors.Is(err, io.EOF):
			return false, nil
		case errors.Is(err, errTruncated), errors.Is(err, ErrMalformedHTTP), errors.Is(err, ErrHeaderTooLarge):
			return true, nil // cannot follow: relay the rest unjudged
		case err != nil:
			return false, err
		}
		if !have {
			select {
			case ex = <-t.log.pending:
				have = true
			default:
				return true, nil // an answer to no request
			}
		}
		if err := t.forward(resp.HeaderLen); err != nil {
			return false, err
		}
		if resp.Interim() {
			continue // 100 Continue, 103 Early Hints: the final answer follows
		}
		have = false
		switched := resp.Status == 101 && ex.upgrade || ex.connect && resp.Status/100 == 2
		if ex.switched != nil {
			ex.switched <- switched
		}
		switch {
		case switched, resp.Status == 101:
			// A 101 nobody asked for: the server no longer speaks
			// HTTP/1.x, and the gate, never told, stays strict.
			return true, nil
		case ex.head, resp.Status == 204, resp.Status == 304:
		case resp.Chunked || resp.HasLength:
			if err := t.body(resp.Chunked, resp.ContentLength); err != nil {
				if errors.Is(err, errBadChunking) || errors.Is(err, errTruncated) {
					return true, nil
				}
				return false, err
			}
		default:
			return true, nil // the body runs to the close
		}
	}
}

// NewAnswerTracker follows src (the upstream) into dst (the client)
// through buf for the gate that announces to a.
func NewAnswerTracker(src io.Reader, dst io.Writer, buf []byte, a *Answers) *AnswerTracker {
	return &AnswerTracker{httpStream: httpStream{src: src, dst: dst, buf: buf}, log: a}
}

// SetDirect lets large bodies bypass the buffer (see httpStream.direct).
func (t *AnswerTracker) SetDirect(direct func(n int64) (int64, error)) { t.direct = direct }

// Forwarded is the number of server bytes written to the client.
func (t *AnswerTracker) Forwarded() int64 { return t.forwarded }

// ForwardBuffered writes what the tracker read but did not forward.
func (t *AnswerTracker) ForwardBuffered() error { return t.forward(t.w - t.r) }
