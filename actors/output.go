package actors

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Output modes: how the agent's stdout and stderr reach the supervisor's
// own output (FORGE_SUPERVISOR_AGENT_OUTPUT).
const (
	// OutputJSON wraps each line the agent prints in an agent_output log
	// record naming its stream: nothing the agent prints can pass for an
	// audit line, glue onto one, or stall one. The default.
	OutputJSON = "json"
	// OutputRaw copies the agent's lines verbatim (stdout to stdout, stderr
	// to stderr), still through pipes and whole lines at a time, so the
	// agent cannot split or stall an audit line — but it can print a line
	// that looks like one. For those who accept that risk.
	OutputRaw = "raw"
)

// MsgAgentOutput is the msg of the records that carry the agent's lines.
const MsgAgentOutput = "agent_output"

// Limits of the relay.
const (
	// MaxAgentLine is the longest line relayed in one record; a longer
	// line is cut into records of at most this many bytes, each but the
	// last marked partial. 16 KiB keeps a record well inside what log
	// pipelines accept (Docker splits at 16 KiB too).
	MaxAgentLine = 16 << 10
	// partialFlush is how long an unfinished line (a prompt, a progress
	// bar) waits for its newline before it is relayed as a partial record.
	partialFlush = 500 * time.Millisecond
	// relayDrain bounds how long the relay waits, after the agent exited,
	// for stray holders of its pipes (a daemon it left) to close them.
	relayDrain = 2 * time.Second
	readChunk  = 32 << 10
)

// Output says where the agent's output goes. The agent never shares the
// supervisor's stdout or stderr: it writes to pipes that the relay reads.
type Output struct {
	// Mode is OutputJSON ("" too) or OutputRaw.
	Mode string
	// Log receives the agent_output records (OutputJSON). It must not
	// sample or filter by level; nil discards the agent's output.
	Log *zap.Logger
	// Stdout and Stderr receive the verbatim lines (OutputRaw), one Write
	// per line; nil discards.
	Stdout, Stderr io.Writer
}

// relay reads the agent's two pipes until they close.
type relay struct {
	files []*os.File
	wg    sync.WaitGroup
}

// startRelay starts one goroutine per stream. The returned write ends go
// to the agent; the caller closes its copies after the agent started.
func startRelay(o Output) (stdoutW, stderrW *os.File, r *relay, err error) {
	if o.Mode != "" && o.Mode != OutputJSON && o.Mode != OutputRaw {
		return nil, nil, nil, fmt.Errorf("agent output: mode %q: want %s or %s", o.Mode, OutputJSON, OutputRaw)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("agent output: pipe for stdout: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, fmt.Errorf("agent output: pipe for stderr: %w", err)
	}
	r = &relay{files: []*os.File{outR, errR}}
	for _, s := range []struct {
		f    *os.File
		name string
		raw  io.Writer
	}{{outR, "stdout", o.Stdout}, {errR, "stderr", o.Stderr}} {
		emit := jsonEmitter(o.Log, s.name)
		if o.Mode == OutputRaw {
			emit = rawEmitter(s.raw)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			relayLines(s.f, emit)
		}()
	}
	return outW, errW, r, nil
}

// stop waits for the streams to end (every writer closed them), at most
// relayDrain, then stops reading; what was read is relayed either way.
// A daemon the agent left holding its pipes writes into a closed pipe
// afterwards (EPIPE), never into the supervisor's output.
func (r *relay) stop() {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(relayDrain):
		// Closing wakes the blocked readers; each relays what it holds.
		for _, f := range r.files {
			f.Close()
		}
		<-done
	}
	for _, f := range r.files {
		f.Close()
	}
}

// emitFunc relays one line (without its newline). partial: the line goes
// on in the next call (cut at MaxAgentLine, or flushed unfinished).
type emitFunc func(line []byte, partial bool)

// relayLines reads f until EOF (or until stop closes it) and emits it line
// by line. An unfinished line gets a read deadline of partialFlush from
// its first byte; when it passes, the line is relayed as partial.
func relayLines(f *os.File, emit emitFunc) {
	buf := make([]byte, readChunk)
	var pending []byte
	waiting := false // a deadline is set for an unfinished line
	for {
		n, err := f.Read(buf)
		pending = emitComplete(append(pending, buf[:n]...), emit)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(pending) > 0 {
				emit(pending, true)
				pending = pending[:0]
			}
		case err != nil:
			// EOF, or closed by stop: the last unfinished line is whole now.
			if len(pending) > 0 {
				emit(pending, false)
			}
			return
		}
		switch {
		case len(pending) == 0 && waiting:
			_ = f.SetReadDeadline(time.Time{})
			waiting = false
		case len(pending) > 0 && !waiting:
			_ = f.SetReadDeadline(time.Now().Add(partialFlush))
			waiting = true
		}
	}
}

// emitComplete emits every complete line of p and every MaxAgentLine
// piece of an overlong one, and returns the rest.
func emitComplete(p []byte, emit emitFunc) []byte {
	for {
		i := indexNewline(p, MaxAgentLine)
		switch {
		case i >= 0:
			emit(p[:i], false)
			p = p[i+1:]
		case len(p) > MaxAgentLine: // one byte more tells a full line from a long one
			cut := runeCut(p, MaxAgentLine)
			emit(p[:cut], true)
			p = p[cut:]
		default:
			return p
		}
	}
}

// indexNewline finds '\n' in the first max+1 bytes of p (a line of
// exactly max bytes still ends in one record).
func indexNewline(p []byte, max int) int {
	if len(p) > max+1 {
		p = p[:max+1]
	}
	for i, c := range p {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// runeCut returns where to cut p (longer than max) at most max bytes in
// without splitting a UTF-8 sequence (invalid bytes are cut anywhere).
func runeCut(p []byte, max int) int {
	for cut := max; cut > max-utf8.UTFMax && cut > 0; cut-- {
		if utf8.RuneStart(p[cut]) {
			return cut
		}
	}
	return max
}

// jsonEmitter writes agent_output records: {"msg":"agent_output",
// "stream":"stdout","line":"..."}, plus "partial":true when the line goes
// on in the next record and "escaped":true when invalid UTF-8 bytes were
// written as \xNN. zap's encoder escapes quotes and control bytes, so the
// record is always one well-formed JSON line.
func jsonEmitter(log *zap.Logger, stream string) emitFunc {
	if log == nil {
		return func([]byte, bool) {}
	}
	return func(line []byte, partial bool) {
		text, escaped := escapeInvalidUTF8(line)
		fields := []zap.Field{zap.String("stream", stream), zap.String("line", text)}
		if partial {
			fields = append(fields, zap.Bool("partial", true))
		}
		if escaped {
			fields = append(fields, zap.Bool("escaped", true))
		}
		log.Info(MsgAgentOutput, fields...)
	}
}

// escapeInvalidUTF8 returns line as a string, each byte that is not part
// of valid UTF-8 written as \xNN (and a backslash as \\ then, so the
// escaping is reversible), and whether it had to escape.
func escapeInvalidUTF8(line []byte) (string, bool) {
	if utf8.Valid(line) {
		return string(line), false
	}
	var sb strings.Builder
	for len(line) > 0 {
		r, size := utf8.DecodeRune(line)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&sb, `\x%02x`, line[0])
		case r == '\\':
			sb.WriteString(`\\`)
		default:
			sb.Write(line[:size])
		}
		line = line[size:]
	}
	return sb.String(), true
}

// rawEmitter writes each line verbatim with its newline in one Write; a
// partial piece gets a newline too, so it never glues onto the next line
// someone else writes.
func rawEmitter(w io.Writer) emitFunc {
	if w == nil {
		return func([]byte, bool) {}
	}
	var buf []byte
	return func(line []byte, _ bool) {
		buf = append(append(buf[:0], line...), '\n')
		_, _ = w.Write(buf)
	}
}
