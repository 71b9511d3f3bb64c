package conn

// cursor reads big-endian integers and length-prefixed vectors off the
// front of a byte slice, as TLS encodes them. Every read reports whether
// enough bytes were there; a failed read leaves the cursor unchanged.
type cursor []byte

func (c *cursor) empty() bool { return len(*c) == 0 }

func (c *cursor) u8() (uint8, bool) {
	if len(*c) < 1 {
		return 0, false
	}
	v := (*c)[0]
	*c = (*c)[1:]
	return v, true
}

func (c *cursor) u16() (uint16, bool) {
	if len(*c) < 2 {
		return 0, false
	}
	v := uint16((*c)[0])<<8 | uint16((*c)[1])
	*c = (*c)[2:]
	return v, true
}

func (c *cursor) bytes(n int) ([]byte, bool) {
	if n < 0 || len(*c) < n {
		return nil, false
	}
	v := (*c)[:n:n]
	*c = (*c)[n:]
	return v, true
}

// vec8 reads an opaque vector with a one-byte length prefix.
func (c *cursor) vec8() ([]byte, bool) {
	save := *c
	n, ok := c.u8()
	if !ok {
		return nil, false
	}
	v, ok := c.bytes(int(n))
	if !ok {
		*c = save
	}
	return v, ok
}

// vec16 reads an opaque vector with a two-byte length prefix.
func (c *cursor) vec16() ([]byte, bool) {
	save := *c
	n, ok := c.u16()
	if !ok {
		return nil, false
	}
	v, ok := c.bytes(int(n))
	if !ok {
		*c = save
	}
	return v, ok
}
