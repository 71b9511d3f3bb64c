package nft

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// FastElem is one fast-set element: a destination and how long it stays.
type FastElem struct {
	Dst netip.AddrPort
	// Open puts it in the *_open sets (allowed at the SYN); otherwise the
	// *_tls sets (first payload checked).
	Open    bool
	Timeout time.Duration
}

// FastSets writes elements into the fast sets of an installed table over
// one lasting netlink connection. It is not safe for concurrent use: one
// goroutine owns it.
type FastSets struct {
	c     *nftables.Conn
	table *nftables.Table
}

// OpenFastSets connects to cfg's namespace for set updates.
func OpenFastSets(cfg Config) (*FastSets, error) {
	cfg, err := cfg.validated()
	if err != nil {
		return nil, err
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: fast sets: open netlink: %w", err)
	}
	return &FastSets{c: c, table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}}, nil
}

// Close releases the netlink connection.
func (f *FastSets) Close() error { return f.c.CloseLasting() }

func (f *FastSets) set(name string) *nftables.Set {
	s := &nftables.Set{Table: f.table, Name: name, HasTimeout: true}
	if name == SetTLS4 || name == SetOpen4 || name == SetTLS6 || name == SetOpen6 {
		s.Concatenation = true
		s.KeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
		if name == SetTLS6 || name == SetOpen6 {
			s.KeyType = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
		}
	}
	return s
}

// Update deletes del and adds add in one atomic batch. A deleted element
// must exist (the kernel refuses the batch otherwise with ENOENT); callers
// delete only what they added and know to be live, to replace it with a
// longer timeout (adding an existing element does not extend it).
func (f *FastSets) Update(del, add []FastElem) error {
	for name, elems := range groupElems(del) {
		if err := f.c.SetDeleteElements(f.set(name), elems); err != nil {
			return fmt.Errorf("nft: fast sets: delete from %s: %w", name, err)
		}
	}
	for name, elems := range groupElems(add) {
		if err := f.c.SetAddElements(f.set(name), elems); err != nil {
			return fmt.Errorf("nft: fast sets: add to %s: %w", name, err)
		}
	}
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("nft: fast sets: update: %w", err)
	}
	return nil
}

// Clear empties the address sets (a policy reload: what the old policy
// allowed may not stand).
func (f *FastSets) Clear() error {
	for _, name := range []string{SetTLS4, SetTLS6, SetOpen4, SetOpen6} {
		f.c.FlushSet(f.set(name))
	}
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("nft: fast sets: clear: %w", err)
	}
	return nil
}

// Heartbeat replaces the alive element with one that lives for ttl. While
// it lives, new flows may take the fast path; once it times out they go to
// the proxy and pending flows are reset.
func (f *FastSets) Heartbeat(ttl time.Duration) error {
	s := f.set(SetAlive)
	f.c.FlushSet(s)
	if err := f.c.SetAddElements(s, []nftables.SetElement{{Key: []byte{6}, Timeout: ttl}}); err != nil {
		return fmt.Errorf("nft: fast sets: heartbeat: %w", err)
	}
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("nft: fast sets: heartbeat: %w", err)
	}
	return nil
}

// Stop removes the alive element at once: new flows go to the proxy and
// pending ones are reset (a clean shutdown's first step).
func (f *FastSets) Stop() error {
	f.c.FlushSet(f.set(SetAlive))
	if err := f.c.Flush(); err != nil {
		return fmt.Errorf("nft: fast sets: stop: %w", err)
	}
	return nil
}

// groupElems sorts elements into their sets and encodes their keys.
func groupElems(elems []FastElem) map[string][]nftables.SetElement {
	out := make(map[string][]nftables.SetElement)
	for _, e := range elems {
		ip := e.Dst.Addr().Unmap()
		var name string
		var key []byte
		switch {
		case ip.Is4() && e.Open:
			name = SetOpen4
		case ip.Is4():
			name = SetTLS4
		case e.Open:
			name = SetOpen6
		default:
			name = SetTLS6
		}
		raw := ip.AsSlice()
		key = append(key, raw...)
		// The port is a 2-byte field padded to a 4-byte register.
		key = append(key, binaryutil.BigEndian.PutUint16(e.Dst.Port())...)
		key = append(key, 0, 0)
		out[name] = append(out[name], nftables.SetElement{Key: key, Timeout: e.Timeout})
	}
	return out
}
