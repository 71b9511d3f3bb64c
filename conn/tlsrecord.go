package conn

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// TLS record and handshake framing (RFC 8446 §5.1 and §4).
const (
	recordHeaderLen     = 5
	recordTypeHandshake = 22
	// maxRecordPayload is the largest TLSPlaintext fragment: RFC 8446
	// §5.1 says the length MUST NOT exceed 2^14, and a ClientHello is
	// always plaintext.
	maxRecordPayload = 1 << 14

	handshakeHeaderLen       = 4
	handshakeTypeClientHello = 1

	// MaxClientHello is the largest ClientHello handshake message (header
	// included) accepted. Real ones are 0.5–2 KiB, post-quantum key shares
	// (X25519MLKEM768, ML-KEM-1024) bring them to 2–8 KiB, and clients
	// stuffing many ALPN values or long tickets reach ~16–20 KiB; 32 KiB
	// leaves room for that and still bounds memory per connection.
	MaxClientHello = 32 << 10

	// MaxPeek is the most bytes Sniff buffers before it must decide. It
	// holds a MaxClientHello message even when a client fragments it into
	// records averaging 5 payload bytes (each record adds a 5-byte
	// header), and it exceeds MaxHTTPHeader. Callers allocate peek buffers
	// of this size; a ClientHello whose records reach past it is rejected.
	MaxPeek = 64 << 10
)

// LooksLikeTLS reports whether b could be the start of a TLS handshake
// record: content type 22 and a 3.x record version. It judges only the
// bytes present, so a one-byte 0x16 looks like TLS.
func LooksLikeTLS(b []byte) bool {
	return len(b) > 0 && checkRecordHeaderPrefix(b, 0) == nil
}

// checkRecordHeaderPrefix validates whatever part of a record header is in
// b (which may be shorter than a header).
func checkRecordHeaderPrefix(b []byte, rec int) error {
	if len(b) > 0 && b[0] != recordTypeHandshake {
		return fmt.Errorf("%w: record %d has content type %d, want handshake (22)", ErrMalformedClientHello, rec, b[0])
	}
	if len(b) > 1 && b[1] != 3 {
		return fmt.Errorf("%w: record %d has version major %d, want 3", ErrMalformedClientHello, rec, b[1])
	}
	if len(b) > 2 && b[2] > 4 {
		return fmt.Errorf("%w: record %d has version 3.%d, want 3.0–3.4", ErrMalformedClientHello, rec, b[2])
	}
	return nil
}

// checkHandshakeHeader validates the part of the handshake header in msg
// and returns the total message length once the header is complete (-1
// before).
func checkHandshakeHeader(msg []byte) (int, error) {
	if len(msg) > 0 && msg[0] != handshakeTypeClientHello {
		return -1, fmt.Errorf("%w: handshake type %d, want ClientHello (1)", ErrMalformedClientHello, msg[0])
	}
	if len(msg) < handshakeHeaderLen {
		return -1, nil
	}
	total := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
	if total > MaxClientHello {
		return -1, fmt.Errorf("%w: ClientHello of %d bytes exceeds the %d-byte limit", ErrMalformedClientHello, total, MaxClientHello)
	}
	return total, nil
}

// firstHandshakeMessage reassembles the handshake message carried by the
// TLS records at the start of b. It returns the whole message (header
// included) and the offset in b where its last record ends. Every record
// up to that point must be a handshake record, and the last record must
// end exactly where the message does: a client sends nothing else before
// the server answers. Errors are decided from the bytes present only, so a
// prefix of a valid stream never yields anything but ErrNeedMore.
//
// When the message sits in one complete record it is a subslice of b;
// otherwise it is copied into a new buffer of at most MaxClientHello+2^14
// bytes.
func firstHandshakeMessage(b []byte) (msg []byte, end int, err error) {
	total := -1 // whole message length, once its header is seen
	var joined []byte
	for pos, rec := 0, 0; ; rec++ {
		rest := b[pos:]
		if err := checkRecordHeaderPrefix(rest, rec); err != nil {
			return nil, 0, err
		}
		if len(rest) < recordHeaderLen {
			return nil, 0, fmt.Errorf("record %d header: %w", rec, ErrNeedMore)
		}
		rlen := int(binary.BigEndian.Uint16(rest[3:5]))
		switch {
		case rlen == 0:
			return nil, 0, fmt.Errorf("%w: record %d is empty (RFC 8446 §5.1 forbids empty handshake fragments)", ErrMalformedClientHello, rec)
		case rlen > maxRecordPayload:
			return nil, 0, fmt.Errorf("%w: record %d length %d exceeds 2^14", ErrMalformedClientHello, rec, rlen)
		}
		recEnd := pos + recordHeaderLen + rlen
		if recEnd > MaxPeek {
			return nil, 0, fmt.Errorf("%w: ClientHello records reach past the %d-byte peek limit (record %d)", ErrMalformedClientHello, MaxPeek, rec)
		}
		payload := rest[recordHeaderLen:min(len(rest), recordHeaderLen+rlen)]

		if rec == 0 && len(payload) == rlen {
			// Fast path: the whole message in one complete record.
			if t, err := checkHandshakeHeader(payload); err == nil && t == rlen {
				return payload, recEnd, nil
			}
		}
		before := len(joined)
		joined = append(joined, payload...)
		t, err := checkHandshakeHeader(joined)
		if err != nil {
			return nil, 0, err
		}
		if t >= 0 {
			total = t
			if cap(joined) < total {
				// Size once: later fragments never exceed total (checked below).
				joined = slices.Grow(joined, total-len(joined))
			}
			if before+rlen > total {
				return nil, 0, fmt.Errorf("%w: record %d carries %d bytes past the end of the ClientHello", ErrMalformedClientHello, rec, before+rlen-total)
			}
		}
		if len(payload) < rlen {
			return nil, 0, fmt.Errorf("record %d: %w", rec, ErrNeedMore)
		}
		if len(joined) == total {
			return joined, recEnd, nil
		}
		pos = recEnd
	}
}

// helloProgress follows the record framing of a ClientHello as it
// arrives, in O(1) per complete record, to tell Sniff when a full parse is
// worth running: when the handshake message may be complete, or when
// something is already wrong (the parser then says what).
type helloProgress struct {
	pos  int                      // offset of the first record not yet complete
	hdr  [handshakeHeaderLen]byte // first bytes of the handshake message
	got  int                      // handshake bytes in complete records
	anom bool
}

func (p *helloProgress) worthParsing(b []byte) bool {
	for !p.anom {
		rest := b[p.pos:]
		if checkRecordHeaderPrefix(rest, 0) != nil {
			p.anom = true
			break
		}
		if len(rest) < recordHeaderLen {
			return false
		}
		rlen := int(binary.BigEndian.Uint16(rest[3:5]))
		if rlen == 0 || rlen > maxRecordPayload || p.pos+recordHeaderLen+rlen > MaxPeek {
			p.anom = true
			break
		}
		if len(rest) < recordHeaderLen+rlen {
			// Judge the handshake type as soon as its byte is in.
			return p.got == 0 && len(rest) > recordHeaderLen && rest[recordHeaderLen] != handshakeTypeClientHello
		}
		for i := 0; i < rlen && p.got+i < handshakeHeaderLen; i++ {
			p.hdr[p.got+i] = rest[recordHeaderLen+i]
		}
		p.got += rlen
		p.pos += recordHeaderLen + rlen
		if p.got >= handshakeHeaderLen {
			total, err := checkHandshakeHeader(p.hdr[:])
			if err != nil || p.got >= total {
				return true
			}
		} else if p.hdr[0] != handshakeTypeClientHello {
			return true
		}
	}
	return true
}
