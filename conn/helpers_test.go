package conn

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// recordingConn keeps a copy of every byte read through it.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

var errStopHandshake = errors.New("captured; stop")

// goClientHello runs a crypto/tls client against a crypto/tls server over
// net.Pipe and returns the raw bytes of the client's first flight, plus
// what Go's own server parser made of them (the reference the tests
// compare against).
func goClientHello(t testing.TB, cfg *tls.Config) ([]byte, *tls.ClientHelloInfo) {
	t.Helper()
	cli, srv := net.Pipe()
	rec := &recordingConn{Conn: srv}
	var info *tls.ClientHelloInfo
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s := tls.Server(rec, &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			info = chi
			return nil, errStopHandshake
		}})
		_ = s.Handshake()
		_ = srv.Close()
	}()
	go func() {
		defer wg.Done()
		_ = tls.Client(cli, cfg).Handshake()
		_ = cli.Close()
	}()
	wg.Wait()
	if info == nil {
		t.Fatal("Go server never saw a ClientHello")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return bytes.Clone(rec.got.Bytes()), info
}

// reframe re-splits the handshake message carried by stream into
// handshake records whose payloads have the given sizes (the last size
// repeats).
func reframe(t testing.TB, stream []byte, sizes ...int) []byte {
	t.Helper()
	msg, _, err := firstHandshakeMessage(stream)
	if err != nil {
		t.Fatalf("reframe: %v", err)
	}
	return frameRecords(msg, sizes...)
}

func frameRecords(msg []byte, sizes ...int) []byte {
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := sizes[min(i, len(sizes)-1)]
		n = min(n, len(msg))
		out = append(out, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// tlsExt is one extension for buildHello.
type tlsExt struct {
	typ  uint16
	data []byte
}

// buildHello frames a ClientHello with the given extensions in one record
// (or in records of 2^14 when larger).
func buildHello(exts ...tlsExt) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // one cipher suite
	body = append(body, 1, 0)                // null compression
	var eb []byte
	for _, e := range exts {
		eb = binary.BigEndian.AppendUint16(eb, e.typ)
		eb = binary.BigEndian.AppendUint16(eb, uint16(len(e.data)))
		eb = append(eb, e.data...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(eb)))
	body = append(body, eb...)
	msg := []byte{handshakeTypeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return frameRecords(append(msg, body...), maxRecordPayload)
}

// sniExt builds a server_name extension from (name_type, name) entries.
func sniExt(entries ...any) tlsExt {
	var list []byte
	for i := 0; i < len(entries); i += 2 {
		list = append(list, byte(entries[i].(int)))
		name := entries[i+1].(string)
		list = binary.BigEndian.AppendUint16(list, uint16(len(name)))
		list = append(list, name...)
	}
	return tlsExt{extServerName, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)}
}

func hostSNI(name string) tlsExt { return sniExt(sniNameTypeHostName, name) }

func alpnExt(protos ...string) tlsExt {
	var list []byte
	for _, p := range protos {
		list = append(list, byte(len(p)))
		list = append(list, p...)
	}
	return tlsExt{extALPN, append(binary.BigEndian.AppendUint16(nil, uint16(len(list))), list...)}
}

// trickleReader returns at most a few bytes per Read, cycling through
// chunk sizes 1..maxChunk, then io.EOF (or blocks: see Sniff tests).
type trickleReader struct {
	data     []byte
	maxChunk int
	i        int
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.i++
	n := min(len(p), len(r.data), 1+r.i%r.maxChunk)
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bigALPN returns n distinct 200-byte protocol names: enough of them push
// a Go ClientHello past 16 KiB and so across several records.
func bigALPN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = string(bytes.Repeat([]byte{byte('a' + i%26)}, 190)) + string(rune('A'+i/26)) + "0123456789"[:9]
	}
	return out
}
