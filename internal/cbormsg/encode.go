package cbormsg

// Major types, shifted into the initial byte.
const (
	MajorUint   byte = 0 << 5
	MajorNeg    byte = 1 << 5
	MajorBytes  byte = 2 << 5
	MajorText   byte = 3 << 5
	MajorArray  byte = 4 << 5
	MajorMap    byte = 5 << 5
	MajorTag    byte = 6 << 5
	MajorSimple byte = 7 << 5
)

// Simple values.
const (
	False byte = 0xf4
	True  byte = 0xf5
	Null  byte = 0xf6
)

// AppendHead appends a head of the given major type carrying n, in its
// shortest form.
func AppendHead(dst []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= 0xff:
		return append(dst, major|24, byte(n))
	case n <= 0xffff:
		return append(dst, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(dst, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, major|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendUint appends an unsigned integer.
func AppendUint(dst []byte, n uint64) []byte { return AppendHead(dst, MajorUint, n) }

// AppendInt appends a signed integer.
func AppendInt(dst []byte, i int64) []byte {
	if i < 0 {
		return AppendHead(dst, MajorNeg, uint64(-(i + 1)))
	}
	return AppendHead(dst, MajorUint, uint64(i))
}

// AppendText appends a text string. It does not check that s is UTF-8.
func AppendText(dst []byte, s string) []byte {
	return append(AppendHead(dst, MajorText, uint64(len(s))), s...)
}

// AppendBytes appends a byte string, or null when b is nil (an empty b that
// is not nil is an empty byte string).
func AppendBytes(dst []byte, b []byte) []byte {
	if b == nil {
		return append(dst, Null)
	}
	return append(AppendHead(dst, MajorBytes, uint64(len(b))), b...)
}

// AppendBool appends true or false.
func AppendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, True)
	}
	return append(dst, False)
}
