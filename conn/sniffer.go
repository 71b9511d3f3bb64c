package conn

import "fmt"

// Sniffer classifies a client stream that arrives in pieces the caller
// holds in memory (the kernel verdict path sees TCP segments, not a
// reader). It applies Sniff's rules to the bytes so far: Add returns done
// once they classify the stream, with the same errors Sniff returns for
// malformed or oversized input, and (false, nil) while they are a valid
// prefix. Timeouts and end of input are the caller's to judge.
type Sniffer struct {
	c classifier
	s Sniffed
}

// Add judges b, the whole stream so far, of which the last k bytes are new.
func (z *Sniffer) Add(b []byte, k int) (s Sniffed, done bool, err error) {
	if k <= 0 || k > len(b) {
		return z.s, false, fmt.Errorf("sniffer: %d new bytes of %d", k, len(b))
	}
	done, err = z.c.classify(&z.s, b, k)
	if !done && err == nil && len(b) >= MaxPeek {
		return z.s, true, bufferFull(b)
	}
	return z.s, done || err != nil, err
}

// PartialProto is what an unfinished classification looks like: TLS or HTTP by
// its first bytes, for the audit line of a flow that never completed.
func PartialProto(b []byte) Proto {
	switch {
	case LooksLikeTLS(b):
		return ProtoTLS
	case LooksLikeHTTP(b):
		return ProtoHTTP
	default:
		return ProtoOpaque
	}
}
