package conn

import (
	"bytes"
	"fmt"
	"testing"
)

// TestAnswerTracker: the tracker pairs answers with the requests the gate
// announced and says "switched" only for a real 101 to an upgrade (or a
// 2xx to CONNECT); whatever it cannot follow ends its judging, and every
// switch after that is refused.
func TestAnswerTracker(t *testing.T) {
	const (
		ok101   = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		ok200   = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
		chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
		head200 = "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
		cont100 = "HTTP/1.1 100 Continue\r\n\r\n"
	)
	get := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	ws := "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	head := "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
	connect := "CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n"
	cases := []struct {
		name     string
		requests []string
		answers  string
		verdicts []bool // of the switching requests, in order
		opaque   bool
	}{
		{"accepted upgrade", []string{ws}, ok101 + "frames", []bool{true}, true},
		{"refused upgrade", []string{ws, get}, ok200 + ok200, []bool{false}, false},
		{"upgrade after a HEAD and a chunked answer", []string{head, get, ws}, head200 + chunked + ok101, []bool{true}, true},
		{"100 Continue, then the switch", []string{ws}, cont100 + ok101, []bool{true}, true},
		{"CONNECT accepted", []string{connect}, "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03", []bool{true}, true},
		{"CONNECT refused", []string{connect}, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", []bool{false}, false},
		{"101 to a plain GET: stop judging", []string{get, ws}, ok101 + ok101, []bool{false}, true},
		{"answer to the close, then the upgrade", []string{get, ws}, "HTTP/1.1 200 OK\r\n\r\n" + ok101, []bool{false}, true},
		{"garbage answer", []string{ws}, "\x16\x03\x01 not http\r\n\r\n", []bool{false}, true},
		{"answer to no request", nil, ok200, nil, true},
	}
	for _, tc := range cases {
		for _, size := range []int{1, 5, 1 << 16} {
			t.Run(fmt.Sprintf("%s/read%d", tc.name, size), func(t *testing.T) {
				log := NewAnswers()
				var exs []exchange
				for _, r := range tc.requests {
					req, err := ParseHTTPRequest([]byte(r))
					if err != nil {
						t.Fatal(err)
					}
					exs = append(exs, log.announce(req))
				}
				var out bytes.Buffer
				tr := AnswerTracker{httpStream: httpStream{src: &chunkReader{b: []byte(tc.answers), size: size}, dst: &out,
					buf: make([]byte, 32<<10)}, log: log}
				opaque, err := tr.Run()
				if err != nil || opaque != tc.opaque {
					t.Fatalf("opaque %v err %v, want opaque %v", opaque, err, tc.opaque)
				}
				var got []bool
				for _, ex := range exs {
					if ex.switched != nil {
						got = append(got, log.await(ex))
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.verdicts) {
					t.Errorf("verdicts %v, want %v", got, tc.verdicts)
				}
				if forwarded := out.String() + string(tr.pending()); !bytes.HasPrefix([]byte(tc.answers), []byte(forwarded)) {
					t.Errorf("forwarded %q is not a prefix of the answers", forwarded)
				}
			})
		}
	}
}

// FuzzAnswerTracker feeds arbitrary server streams to the tracker behind
// an upgrade request: it never panics, forwards only a prefix of what the
// server sent, and says "switched" only when the stream it forwarded ends
// in a 101 head.
func FuzzAnswerTracker(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 101 Switching Protocols\r\n\r\nframes"), uint8(3))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 x\r\n\r\n"), uint8(1))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		log := NewAnswers()
		var exs []exchange
		for _, r := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"} {
			req, err := ParseHTTPRequest([]byte(r))
			if err != nil {
				t.Fatal(err)
			}
			exs = append(exs, log.announce(req))
		}
		var out bytes.Buffer
		tr := NewAnswerTracker(&chunkReader{b: in, size: int(size) + 1}, &out, make([]byte, 32<<10), log)
		_, _ = tr.Run()
		if !bytes.HasPrefix(in, out.Bytes()) || tr.Forwarded() != int64(out.Len()) {
			t.Fatalf("forwarded %q is not a prefix of the input", out.Bytes())
		}
		if log.await(exs[1]) {
			fw := out.Bytes()
			i := bytes.LastIndex(fw, []byte("HTTP/1."))
			if i < 0 || !bytes.HasPrefix(fw[i+len("HTTP/1.x"):], []byte(" 101")) || !bytes.HasSuffix(fw, []byte("\n")) {
				t.Fatalf("switched without a 101 head at the end of %q", fw)
			}
		}
	})
}
