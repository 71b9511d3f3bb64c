package main

import (
	"strconv"
	"strings"
	"time"

	fdns "github.com/forge/forge-supervisor/dns"
)

// kind is how values of one Go type are read from text, written back as
// text the same parser accepts, and shown in `forge-supervisor config`.
type kind[T any] struct {
	parse  func(string) (T, error)
	text   func(T) string
	json   func(T) any // nil: the value itself
	isBool bool        // a flag that needs no value (-dry-run)
}

var (
	boolKind = kind[bool]{parse: parseBool, text: strconv.FormatBool, isBool: true}
	pathKind = kind[string]{parse: parsePath, text: same}
	portKind = kind[uint16]{parse: parsePort, text: func(p uint16) string { return strconv.Itoa(int(p)) }}
	idKind   = kind[uint32]{parse: parseID, text: func(n uint32) string { return strconv.FormatUint(uint64(n), 10) }}
	rateKind = kind[float64]{parse: parseRate, text: func(r float64) string { return strconv.FormatFloat(r, 'g', -1, 64) }}
	// Durations show in Go syntax ("1m0s"), which parse reads back.
	durationKind = kind[time.Duration]{parse: parseDuration, text: time.Duration.String,
		json: func(d time.Duration) any { return d.String() }}
	// Lists show as [] when empty, never null.
	upstreamsKind = kind[[]string]{parse: fdns.ParseUpstreams, text: func(l []string) string { return strings.Join(l, ",") },
		json: func(l []string) any { return nonNil(l) }}
	portListKind = kind[[]uint16]{parse: parsePortList, text: portsText,
		json: func(l []uint16) any { return nonNil(l) }}
)

// intKind is an integer lo..hi.
func intKind(lo, hi int) kind[int] {
	return kind[int]{parse: func(v string) (int, error) { return parseInt(v, lo, hi) }, text: strconv.Itoa}
}

// wordKind is one of a few words, as parse normalises them.
func wordKind(parse func(string) (string, error)) kind[string] {
	return kind[string]{parse: parse, text: same}
}

func same(s string) string { return s }

func portsText(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// nonNil makes an empty list encode as [].
func nonNil[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}
