package actors

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// lockedBuffer collects a logger's JSON lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

type record struct {
	Msg     string `json:"msg"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
	Partial bool   `json:"partial"`
	Escaped bool   `json:"escaped"`
}

func (l *lockedBuffer) records(t *testing.T) []record {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []record
	for _, line := range strings.Split(strings.TrimSuffix(l.b.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("record is not one JSON line: %v: %q", err, line)
		}
		out = append(out, r)
	}
	return out
}

func jsonLogger(w *lockedBuffer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.DebugLevel))
}

// relayOf runs the relay of one pipe over the writes and returns its
// records once the pipe is closed.
func relayOf(t *testing.T, writes ...[]byte) []record {
	t.Helper()
	var buf lockedBuffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		relayLines(r, jsonEmitter(jsonLogger(&buf), "stdout"))
	}()
	for _, p := range writes {
		if p == nil { // a pause longer than partialFlush
			time.Sleep(partialFlush + 200*time.Millisecond)
			continue
		}
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	<-done
	r.Close()
	return buf.records(t)
}

// TestRelayForgedAuditLineIsWrapped: a line shaped like a denial arrives
// as the value of an agent_output record, never as an event of its own.
func TestRelayForgedAuditLineIsWrapped(t *testing.T) {
	forged := `{"level":"info","msg":"egress_denied","sni":"forged.test","reason":"not_in_allowlist"}`
	recs := relayOf(t, []byte(forged+"\n"+`{"msg":"policy_reloaded","mode":"dev-open"}`+"\n"))
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Msg != MsgAgentOutput || r.Stream != "stdout" || r.Partial {
			t.Errorf("record %+v: want a whole agent_output line of stdout", r)
		}
	}
	if recs[0].Line != forged {
		t.Errorf("line %q, want %q", recs[0].Line, forged)
	}
}

// TestRelayPartialLineIsItsOwnRecord: an unfinished line is relayed as a
// partial record after partialFlush, and the rest continues in the next
// record; it never joins anything else.
func TestRelayPartialLineIsItsOwnRecord(t *testing.T) {
	recs := relayOf(t, []byte("Password: "), nil, []byte("typed\nnext\n"))
	want := []record{
		{Msg: MsgAgentOutput, Stream: "stdout", Line: "Password: ", Partial: true},
		{Msg: MsgAgentOutput, Stream: "stdout", Line: "typed"},
		{Msg: MsgAgentOutput, Stream: "stdout", Line: "next"},
	}
	if len(recs) != len(want) {
		t.Fatalf("records %+v, want %+v", recs, want)
	}
	for i := range want {
		if recs[i] != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, recs[i], want[i])
		}
	}
}

// TestRelayLongLineSplitOnRuneBoundary: a line longer than MaxAgentLine is
// cut into partial records that never split a UTF-8 sequence.
func TestRelayLongLineSplitOnRuneBoundary(t *testing.T) {
	long := strings.Repeat("é", MaxAgentLine) // 2 bytes each: 2×MaxAgentLine bytes
	recs := relayOf(t, []byte("a"+long+"\n"))
	var joined strings.Builder
	for i, r := range recs {
		if len(r.Line) > MaxAgentLine {
			t.Errorf("record %d is %d bytes, more than %d", i, len(r.Line), MaxAgentLine)
		}
		if !utf8.ValidString(r.Line) || r.Escaped {
			t.Errorf("record %d split a rune", i)
		}
		if r.Partial != (i < len(recs)-1) {
			t.Errorf("record %d: partial %v", i, r.Partial)
		}
		joined.WriteString(r.Line)
	}
	if joined.String() != "a"+long {
		t.Errorf("reassembled line differs (%d bytes, want %d)", joined.Len(), len(long)+1)
	}
	// A line of exactly MaxAgentLine bytes is one record.
	exact := strings.Repeat("x", MaxAgentLine)
	if recs := relayOf(t, []byte(exact+"\n")); len(recs) != 1 || recs[0].Partial || recs[0].Line != exact {
		t.Errorf("a line of exactly %d bytes: %d records", MaxAgentLine, len(recs))
	}
}

// TestRelayInvalidUTF8IsEscaped: bytes that are not UTF-8 come out as
// \xNN (backslashes doubled then), marked escaped; nothing is replaced
// silently.
func TestRelayInvalidUTF8IsEscaped(t *testing.T) {
	recs := relayOf(t, []byte("ok\xff\xfe\\x41\n"), []byte("plain \\ stays\n"))
	if len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
	if r := recs[0]; r.Line != `ok\xff\xfe\\x41` || !r.Escaped {
		t.Errorf("record %+v, want line ok\\xff\\xfe\\\\x41 escaped", r)
	}
	if r := recs[1]; r.Line != `plain \ stays` || r.Escaped {
		t.Errorf("valid line %+v changed", r)
	}
}

// TestRelayControlBytesStayInsideTheRecord: CR, NUL, ESC and friends never
// end a record early; the JSON encoder escapes them.
func TestRelayControlBytesStayInsideTheRecord(t *testing.T) {
	recs := relayOf(t, []byte("a\rb\x00c\x1b[2Jd\u2028e\n"))
	if len(recs) != 1 || recs[0].Line != "a\rb\x00c\x1b[2Jd\u2028e" {
		t.Fatalf("records %+v", recs)
	}
}

// TestRawEmitterKeepsLinesWhole: raw mode writes each line with its
// newline in one Write, a partial piece ended by a newline too.
func TestRawEmitterKeepsLinesWhole(t *testing.T) {
	var writes []string
	w := writerFunc(func(p []byte) (int, error) { writes = append(writes, string(p)); return len(p), nil })
	emit := rawEmitter(w)
	emit([]byte(`{"msg":"egress_denied"}`), false)
	emit([]byte("unfinished"), true)
	if len(writes) != 2 || writes[0] != "{\"msg\":\"egress_denied\"}\n" || writes[1] != "unfinished\n" {
		t.Errorf("writes %q", writes)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// FuzzRelayLines: whatever the agent writes, in whatever pieces, the
// records are valid JSON lines of at most MaxAgentLine bytes of line, and
// unescaping and joining them gives back exactly the bytes written (a
// final newline aside).
func FuzzRelayLines(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), uint16(3))
	f.Add([]byte(`{"msg":"egress_denied"}`+"\n\xff\\\n"), uint16(1))
	f.Add(bytes.Repeat([]byte("é"), MaxAgentLine+3), uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, piece uint16) {
		var lines [][]byte
		var partials []bool
		emit := func(line []byte, partial bool) {
			lines = append(lines, append([]byte(nil), line...))
			partials = append(partials, partial)
		}
		orig := append([]byte(nil), data...)
		step := int(piece)%4096 + 1
		var pending []byte
		for len(data) > 0 {
			n := min(step, len(data))
			pending = emitComplete(append(pending, data[:n]...), emit)
			data = data[n:]
		}
		if len(pending) > 0 {
			emit(pending, false)
		}
		var back []byte
		for i, l := range lines {
			if len(l) > MaxAgentLine {
				t.Fatalf("line %d is %d bytes", i, len(l))
			}
			text, _ := escapeInvalidUTF8(l)
			if !utf8.ValidString(text) {
				t.Fatalf("escaped line %d is not UTF-8", i)
			}
			if bytes.IndexByte(l, '\n') >= 0 {
				t.Fatalf("line %d holds a newline", i)
			}
			back = append(back, l...)
			if !partials[i] {
				back = append(back, '\n')
			}
		}
		want := orig
		if len(orig) > 0 && orig[len(orig)-1] != '\n' {
			want = append(want, '\n')
		}
		if !bytes.Equal(back, want) {
			t.Fatalf("relayed bytes differ from the written ones:\n got %q\nwant %q", back, want)
		}
	})
}
