package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"time"
)

// rawClientHello builds a TLS 1.3-capable ClientHello record by hand, so
// the server name can hold bytes crypto/tls refuses to send (a trailing
// dot, NUL, newline, an IP literal). sni == nil leaves the server_name
// extension out.
func rawClientHello(sni []byte, alpn []string) []byte {
	var body []byte
	body = append(body, 3, 3) // legacy_version TLS 1.2
	body = append(body, random(32)...)
	body = append(body, 32)
	body = append(body, random(32)...) // legacy_session_id
	suites := []uint16{0x1301, 0x1302, 0x1303, 0xc02f, 0xc02b, 0xc030}
	body = u16(body, len(suites)*2)
	for _, s := range suites {
		body = u16(body, int(s))
	}
	body = append(body, 1, 0) // compression: null

	var ext []byte
	if sni != nil {
		var list []byte
		list = append(list, 0) // host_name
		list = u16(list, len(sni))
		list = append(list, sni...)
		var e []byte
		e = u16(e, len(list))
		e = append(e, list...)
		ext = extension(ext, 0, e)
	}
	ext = extension(ext, 10, []byte{0, 4, 0, 0x1d, 0, 0x17})   // supported_groups x25519, p256
	ext = extension(ext, 13, []byte{0, 6, 4, 3, 8, 4, 4, 1})   // signature_algorithms
	ext = extension(ext, 43, []byte{4, 3, 4, 3, 3})            // supported_versions 1.3, 1.2
	ks := append([]byte{0, 36, 0, 0x1d, 0, 32}, random(32)...) // key_share x25519
	ext = extension(ext, 51, ks)
	if len(alpn) > 0 {
		var list []byte
		for _, p := range alpn {
			list = append(list, byte(len(p)))
			list = append(list, p...)
		}
		var e []byte
		e = u16(e, len(list))
		e = append(e, list...)
		ext = extension(ext, 16, e)
	}
	body = u16(body, len(ext))
	body = append(body, ext...)

	hs := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	hs = append(hs, body...)
	return record(22, hs)
}

func extension(b []byte, typ int, data []byte) []byte {
	b = u16(b, typ)
	b = u16(b, len(data))
	return append(b, data...)
}

func record(typ byte, payload []byte) []byte {
	r := []byte{typ, 3, 1}
	r = u16(r, len(payload))
	return append(r, payload...)
}

func u16(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// capturedClientHello is the first flight crypto/tls writes for cfg,
// captured through a net.Pipe (the other end never answers).
func capturedClientHello(cfg *tls.Config) ([]byte, error) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go func() {
		c := tls.Client(client, cfg)
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_ = c.Handshake()
	}()
	_ = server.SetReadDeadline(time.Now().Add(2 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		return nil, err
	}
	if hdr[0] != 22 {
		return nil, errors.New("first record is not a handshake")
	}
	n := int(binary.BigEndian.Uint16(hdr[3:]))
	rec := make([]byte, 5+n)
	copy(rec, hdr)
	if _, err := io.ReadFull(server, rec[5:]); err != nil {
		return nil, err
	}
	return rec, nil
}

// reframe splits the handshake message of one record into records of at
// most size bytes each, as RFC 8446 §5.1 allows.
func reframe(rec []byte, size int) []byte {
	msg := rec[5:]
	var outb []byte
	for len(msg) > 0 {
		k := min(size, len(msg))
		outb = append(outb, record(22, msg[:k])...)
		msg = msg[k:]
	}
	return outb
}
