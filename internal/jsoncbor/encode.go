package jsoncbor

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
)

// CBOR major types, shifted into the initial byte.
const (
	majUint   = 0 << 5
	majNeg    = 1 << 5
	majBytes  = 2 << 5
	majText   = 3 << 5
	majArray  = 4 << 5
	majMap    = 5 << 5
	majTag    = 6 << 5
	majSimple = 7 << 5
)

// Initial bytes of the simple values and floats.
const (
	cborFalse = 0xf4
	cborTrue  = 0xf5
	cborNull  = 0xf6
	cborF16   = 0xf9
	cborF32   = 0xfa
	cborF64   = 0xfb
	cborBreak = 0xff
)

// headLen is the length of the shortest head carrying argument n.
func headLen(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	case n <= math.MaxUint32:
		return 5
	}
	return 9
}

// appendHead appends the shortest head of major type major with argument n.
func appendHead(dst []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(dst, major|byte(n))
	case n <= math.MaxUint8:
		return append(dst, major|24, byte(n))
	case n <= math.MaxUint16:
		return append(dst, major|25, byte(n>>8), byte(n))
	case n <= math.MaxUint32:
		return append(dst, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, major|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
		byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// putHead writes the shortest head for n into b, which is exactly
// headLen(n) bytes long.
func putHead(b []byte, major byte, n uint64) {
	appendHead(b[:0], major, n)
}

// grow extends b by n bytes (contents unspecified).
func grow(b []byte, n int) []byte {
	b = slices.Grow(b, n)
	return b[:len(b)+n]
}

// finishContainer writes the head of an array or map of n elements whose
// content starts at dst[start+1:], where one byte was reserved for the head
// at dst[start], moving the content when the head needs more room.
func finishContainer(dst []byte, start int, major byte, n uint64) []byte {
	if n < 24 {
		dst[start] = major | byte(n)
		return dst
	}
	hl := headLen(n)
	end := len(dst)
	dst = grow(dst, hl-1)
	copy(dst[start+hl:], dst[start+1:end])
	putHead(dst[start:start+hl], major, n)
	return dst
}

// finishString writes the head of a text string whose content starts at
// dst[start+reserved:], where reserved bytes were kept for the head at
// dst[start], moving the content when the head needs less room.
func finishString(dst []byte, start, reserved int) []byte {
	n := uint64(len(dst) - start - reserved)
	hl := headLen(n)
	if hl < reserved {
		copy(dst[start+hl:], dst[start+reserved:])
		dst = dst[:len(dst)-(reserved-hl)]
	}
	putHead(dst[start:start+hl], majText, n)
	return dst
}

// appendFloat appends f (never NaN or ±Inf) in the shortest of float16,
// float32 and float64 that holds it exactly.
func appendFloat(dst []byte, f float64) []byte {
	f32 := float32(f)
	if float64(f32) == f {
		if h, ok := f16From32(f32); ok {
			return append(dst, cborF16, byte(h>>8), byte(h))
		}
		b := math.Float32bits(f32)
		return append(dst, cborF32, byte(b>>24), byte(b>>16), byte(b>>8), byte(b))
	}
	b := math.Float64bits(f)
	return append(dst, cborF64, byte(b>>56), byte(b>>48), byte(b>>40), byte(b>>32),
		byte(b>>24), byte(b>>16), byte(b>>8), byte(b))
}

// f16From32 returns the IEEE 754 half-precision bits of f when f (finite)
// is exactly representable as a half, including subnormal halves.
func f16From32(f float32) (uint16, bool) {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff == 0:
		return sign, true
	case exp >= -14 && exp <= 15:
		if mant&0x1fff != 0 {
			return 0, false
		}
		return sign | uint16(exp+15)<<10 | uint16(mant>>13), true
	case exp >= -24 && exp < -14:
		// value = (1<<23 | mant) * 2^(exp-23) = m * 2^-24
		shift := uint(-exp - 1)
		full := uint32(1)<<23 | mant
		if full&(uint32(1)<<shift-1) != 0 {
			return 0, false
		}
		return sign | uint16(full>>shift), true
	}
	return 0, false
}

// f16To64 converts half-precision bits to float64 (exactly).
func f16To64(h uint16) float64 {
	exp := h >> 10 & 0x1f
	mant := h & 0x3ff
	var f float64
	switch exp {
	case 0:
		f = float64(mant) * (1.0 / (1 << 24))
	case 0x1f:
		if mant == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = float64(math.Float32frombits(uint32(exp-15+127)<<23 | uint32(mant)<<13))
	}
	if h&0x8000 != 0 {
		f = -f
	}
	return f
}

// appendJSONFloat appends f (finite) as a JSON number that parses back to
// exactly f and that is never an integer literal: shortest round-trip
// digits, exponent form below 1e-6 and from 1e21 on, ".0" appended to an
// integral value in plain form.
func appendJSONFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-07 to e-7, as encoding/json does.
		n := len(dst)
		if n-start >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
		return dst
	}
	if bytes.IndexByte(dst[start:], '.') < 0 {
		dst = append(dst, '.', '0')
	}
	return dst
}

// keySpan locates one encoded key in the output: dst[start:end]. off is the
// key's offset in the input, for the error message.
type keySpan struct {
	start, end int
	off        int
}

// smallKeys is the number of keys per object checked for duplicates on a
// stack array with a 64-bit filter; larger objects are sorted.
const smallKeys = 16

// keyBit hashes a key to one of 64 bits.
func keyBit(k []byte) uint8 {
	x := uint64(len(k))
	if len(k) >= 8 {
		x ^= binary.LittleEndian.Uint64(k) ^ binary.LittleEndian.Uint64(k[len(k)-8:])*0xff51afd7ed558ccd
	} else {
		for _, c := range k {
			x = x<<8 | uint64(c)
		}
	}
	return uint8((x * 0x9e3779b97f4a7c15) >> 58)
}

// findDup returns the key that first repeats an earlier key of the same
// object (the one with the smallest input offset among the repeats).
// Keys compare by their encoded bytes, which is equality of the decoded
// strings since the encoding is canonical. keys may be reordered.
func findDup(dst []byte, keys []keySpan) (keySpan, bool) {
	if len(keys) <= smallKeys {
		var bits [smallKeys]uint8
		var seen uint64
		for j, kj := range keys {
			k := dst[kj.start:kj.end]
			b := keyBit(k)
			bits[j] = b
			if seen&(1<<b) != 0 {
				for i := range j {
					if bits[i] == b && bytes.Equal(dst[keys[i].start:keys[i].end], k) {
						return kj, true
					}
				}
			}
			seen |= 1 << b
		}
		return keySpan{}, false
	}
	slices.SortFunc(keys, func(a, b keySpan) int {
		if c := bytes.Compare(dst[a.start:a.end], dst[b.start:b.end]); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})
	best, found := keySpan{}, false
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(dst[keys[i-1].start:keys[i-1].end], dst[keys[i].start:keys[i].end]) &&
			(!found || keys[i].off < best.off) {
			best, found = keys[i], true
		}
	}
	return best, found
}
