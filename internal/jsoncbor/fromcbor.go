package jsoncbor

import (
	"encoding/base64"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// FromCBOR checks that src is exactly one well-formed CBOR item (RFC 8949)
// that JSON can represent, and appends it to dst in the canonical form
// FromJSON produces, so that the same data arriving as JSON or as CBOR is
// stored as the same bytes. On error it returns dst unchanged in length and
// an *Error. The mapping is described in the package documentation.
func FromCBOR(dst, src []byte) ([]byte, error) {
	if len(src) > MaxLen {
		return dst, errorf(MaxLen, ErrTooLarge, "input of %d bytes exceeds the limit of %d", len(src), MaxLen)
	}
	d := cdec{src: src, dst: dst}
	if err := d.item(0); err != nil {
		return dst, err
	}
	if d.pos < len(src) {
		return dst, errorf(d.pos, ErrMalformed, "extra data after the CBOR item")
	}
	return d.dst, nil
}

// ToJSON appends src, one CBOR item, to dst as compact JSON text. It
// accepts what FromCBOR accepts, of any length, and for every such input
// ToJSON(src) equals ToJSON(FromCBOR(src)). On error it returns dst
// unchanged in length and an *Error.
func ToJSON(dst, src []byte) ([]byte, error) {
	d := cdec{src: src, dst: dst, json: true}
	if err := d.item(0); err != nil {
		return dst, err
	}
	if d.pos < len(src) {
		return dst, errorf(d.pos, ErrMalformed, "extra data after the CBOR item")
	}
	return d.dst, nil
}

var scratch = sync.Pool{New: func() any { return new([]byte) }}

// Valid reports whether FromCBOR would accept src: nil, or the error
// FromCBOR would return. It is safe for concurrent use.
func Valid(src []byte) error {
	bp := scratch.Get().(*[]byte)
	out, err := FromCBOR((*bp)[:0], src)
	if cap(out) <= 64<<10 {
		*bp = out[:0]
		scratch.Put(bp)
	}
	return err
}

// cdec is the state of one FromCBOR or ToJSON call.
type cdec struct {
	src  []byte
	pos  int
	dst  []byte
	json bool // emit JSON text; otherwise canonical CBOR
}

func (d *cdec) eof() error {
	return errorf(len(d.src), ErrMalformed, "unexpected end of CBOR input")
}

// head reads the head of the item at d.pos. For indefinite length
// (additional information 31) it returns indef true; it refuses the
// reserved additional information 28-30.
func (d *cdec) head() (ib byte, arg uint64, indef bool, err error) {
	src := d.src
	if d.pos >= len(src) {
		return 0, 0, false, d.eof()
	}
	ib = src[d.pos]
	ai := ib & 31
	switch {
	case ai < 24:
		d.pos++
		return ib, uint64(ai), false, nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(src)-d.pos-1 < n {
			return 0, 0, false, d.eof()
		}
		for _, c := range src[d.pos+1 : d.pos+1+n] {
			arg = arg<<8 | uint64(c)
		}
		d.pos += 1 + n
		return ib, arg, false, nil
	case ai == 31:
		d.pos++
		return ib, 0, true, nil
	}
	return 0, 0, false, errorf(d.pos, ErrMalformed, "reserved additional information %d in initial byte 0x%02x", ai, ib)
}

// item transcodes the item at d.pos, which is inside depth containers.
func (d *cdec) item(depth int) error {
	off := d.pos
	ib, arg, indef, err := d.head()
	if err != nil {
		return err
	}
	major := ib &^ 31
	if indef {
		switch major {
		case majBytes, majText, majArray, majMap:
		case majSimple:
			return errorf(off, ErrMalformed, "break outside an indefinite-length item")
		default:
			return errorf(off, ErrMalformed, "indefinite length is not allowed for %s", majorName(ib))
		}
	}
	switch major {
	case majUint:
		if d.json {
			d.dst = strconv.AppendUint(d.dst, arg, 10)
		} else {
			d.dst = appendHead(d.dst, majUint, arg)
		}
	case majNeg:
		switch {
		case arg <= math.MaxInt64 && d.json:
			d.dst = strconv.AppendInt(d.dst, -1-int64(arg), 10)
		case arg <= math.MaxInt64:
			d.dst = appendHead(d.dst, majNeg, arg)
		case d.json && arg == math.MaxUint64:
			d.dst = append(d.dst, "-18446744073709551616"...)
		case d.json:
			d.dst = append(d.dst, '-')
			d.dst = strconv.AppendUint(d.dst, arg+1, 10)
		case arg == math.MaxUint64:
			// Below int64: FromJSON makes a float64 of it, and so do we.
			d.dst = appendFloat(d.dst, -0x1p64)
		default:
			d.dst = appendFloat(d.dst, -float64(arg+1))
		}
	case majBytes:
		return d.bytes(arg, indef)
	case majText:
		_, err := d.text(arg, indef)
		return err
	case majArray:
		return d.array(off, arg, indef, depth+1)
	case majMap:
		return d.mapping(off, arg, indef, depth+1)
	case majTag:
		return errorf(off, ErrUnsupported, "tag %d is not allowed (JSON has no tags)", arg)
	default:
		return d.simple(off, ib, arg)
	}
	return nil
}

func (d *cdec) simple(off int, ib byte, arg uint64) error {
	var f float64
	switch ai := ib & 31; ai {
	case 20, 21, 22:
		if d.json {
			d.dst = append(d.dst, [...]string{"false", "true", "null"}[ai-20]...)
		} else {
			d.dst = append(d.dst, ib)
		}
		return nil
	case 23:
		return errorf(off, ErrUnsupported, "undefined is not allowed (JSON has no undefined)")
	case 24:
		if arg < 32 {
			return errorf(off, ErrMalformed, "simple value %d encoded in two bytes", arg)
		}
		return errorf(off, ErrUnsupported, "simple value %d is not allowed (only false, true, null)", arg)
	case 25:
		f = f16To64(uint16(arg))
	case 26:
		f = float64(math.Float32frombits(uint32(arg)))
	case 27:
		f = math.Float64frombits(arg)
	default:
		return errorf(off, ErrUnsupported, "simple value %d is not allowed (only false, true, null)", arg)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return errorf(off, ErrUnsupported, "float %v is not allowed (JSON has no NaN or infinity)", f)
	}
	if d.json {
		d.dst = appendJSONFloat(d.dst, f)
	} else {
		d.dst = appendFloat(d.dst, f)
	}
	return nil
}

// chunk reads the next chunk of an indefinite-length string of the given
// major type; done is true at the break.
func (d *cdec) chunk(major byte) (c []byte, done bool, err error) {
	off := d.pos
	if off >= len(d.src) {
		return nil, false, d.eof()
	}
	if d.src[off] == cborBreak {
		d.pos++
		return nil, true, nil
	}
	ib, n, indef, err := d.head()
	if err != nil {
		return nil, false, err
	}
	name := "text string"
	if major == majBytes {
		name = "byte string"
	}
	if ib&^31 != major {
		return nil, false, errorf(off, ErrMalformed, "indefinite-length %s holds %s, not a %s chunk", name, majorName(ib), name)
	}
	if indef {
		return nil, false, errorf(off, ErrMalformed, "indefinite-length %s holds a nested indefinite-length chunk", name)
	}
	if n > uint64(len(d.src)-d.pos) {
		return nil, false, d.eof()
	}
	c = d.src[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return c, false, nil
}

// text transcodes a text string whose head was read; it returns where the
// output starts.
func (d *cdec) text(n uint64, indef bool) (int, error) {
	start := len(d.dst)
	if !indef {
		if n > uint64(len(d.src)-d.pos) {
			return start, d.eof()
		}
		s := d.src[d.pos : d.pos+int(n)]
		if d.json {
			d.dst = append(d.dst, '"')
			var bad int
			if d.dst, bad = appendEscaped(d.dst, s); bad >= 0 {
				return start, errorf(d.pos+bad, ErrInvalidUTF8, "invalid UTF-8 in text string")
			}
			d.dst = append(d.dst, '"')
			d.pos += int(n)
		} else {
			if !utf8.Valid(s) {
				return start, errorf(d.pos+invalidUTF8At(s), ErrInvalidUTF8, "invalid UTF-8 in text string")
			}
			d.pos += int(n)
			d.dst = appendHead(d.dst, majText, n)
			d.dst = append(d.dst, s...)
		}
		return start, nil
	}
	if d.json {
		d.dst = append(d.dst, '"')
	} else {
		d.dst = grow(d.dst, 9)
	}
	for {
		c, done, err := d.chunk(majText)
		if err != nil {
			return start, err
		}
		if done {
			break
		}
		if !utf8.Valid(c) {
			return start, errorf(d.pos-len(c)+invalidUTF8At(c), ErrInvalidUTF8, "invalid UTF-8 in text string chunk")
		}
		if d.json {
			d.dst, _ = appendEscaped(d.dst, c)
		} else {
			d.dst = append(d.dst, c...)
		}
	}
	if d.json {
		d.dst = append(d.dst, '"')
	} else {
		d.dst = finishString(d.dst, start, 9)
	}
	return start, nil
}

// bytes transcodes a byte string, whose head was read, to a base64 text
// string (standard alphabet, padded).
func (d *cdec) bytes(n uint64, indef bool) error {
	enc := base64.StdEncoding
	if !indef {
		if n > uint64(len(d.src)-d.pos) {
			return d.eof()
		}
		s := d.src[d.pos : d.pos+int(n)]
		d.pos += int(n)
		if d.json {
			d.dst = append(d.dst, '"')
			d.dst = enc.AppendEncode(d.dst, s)
			d.dst = append(d.dst, '"')
		} else {
			d.dst = appendHead(d.dst, majText, uint64(enc.EncodedLen(len(s))))
			d.dst = enc.AppendEncode(d.dst, s)
		}
		return nil
	}
	start := len(d.dst)
	if d.json {
		d.dst = append(d.dst, '"')
	} else {
		d.dst = grow(d.dst, 9)
	}
	var b64 b64Writer
	for {
		c, done, err := d.chunk(majBytes)
		if err != nil {
			return err
		}
		if done {
			break
		}
		d.dst = b64.write(d.dst, c)
	}
	d.dst = b64.flush(d.dst)
	if d.json {
		d.dst = append(d.dst, '"')
	} else {
		d.dst = finishString(d.dst, start, 9)
	}
	return nil
}

// b64Writer base64-encodes a byte string that arrives in chunks.
type b64Writer struct {
	carry [3]byte
	n     int
}

func (w *b64Writer) write(dst, p []byte) []byte {
	if w.n > 0 {
		for w.n < 3 && len(p) > 0 {
			w.carry[w.n] = p[0]
			w.n++
			p = p[1:]
		}
		if w.n < 3 {
			return dst
		}
		dst = base64.StdEncoding.AppendEncode(dst, w.carry[:])
		w.n = 0
	}
	full := len(p) / 3 * 3
	dst = base64.StdEncoding.AppendEncode(dst, p[:full])
	w.n = copy(w.carry[:], p[full:])
	return dst
}

func (w *b64Writer) flush(dst []byte) []byte {
	dst = base64.StdEncoding.AppendEncode(dst, w.carry[:w.n])
	w.n = 0
	return dst
}

func (d *cdec) depthErr(off int) error {
	return errorf(off, ErrDepth, "arrays and maps nest deeper than %d", MaxDepth)
}

func (d *cdec) array(off int, n uint64, indef bool, depth int) error {
	if depth > MaxDepth {
		return d.depthErr(off)
	}
	if !indef && n > uint64(len(d.src)-d.pos) {
		return errorf(off, ErrMalformed, "array of %d elements is longer than the rest of the input", n)
	}
	start := len(d.dst)
	switch {
	case d.json:
		d.dst = append(d.dst, '[')
	case indef:
		d.dst = append(d.dst, majArray)
	default:
		d.dst = appendHead(d.dst, majArray, n)
	}
	var i uint64
	for ; indef || i < n; i++ {
		if indef {
			if d.pos >= len(d.src) {
				return d.eof()
			}
			if d.src[d.pos] == cborBreak {
				d.pos++
				break
			}
		}
		if d.json && i > 0 {
			d.dst = append(d.dst, ',')
		}
		if err := d.item(depth); err != nil {
			return err
		}
	}
	switch {
	case d.json:
		d.dst = append(d.dst, ']')
	case indef:
		d.dst = finishContainer(d.dst, start, majArray, i)
	}
	return nil
}

func (d *cdec) mapping(off int, n uint64, indef bool, depth int) error {
	if depth > MaxDepth {
		return d.depthErr(off)
	}
	if !indef && n > uint64(len(d.src)-d.pos)/2 {
		return errorf(off, ErrMalformed, "map of %d pairs is longer than the rest of the input", n)
	}
	start := len(d.dst)
	switch {
	case d.json:
		d.dst = append(d.dst, '{')
	case indef:
		d.dst = append(d.dst, majMap)
	default:
		d.dst = appendHead(d.dst, majMap, n)
	}
	var small [smallKeys]keySpan
	keys := small[:0]
	var i uint64
	for ; indef || i < n; i++ {
		koff := d.pos
		if koff >= len(d.src) {
			return d.eof()
		}
		kb := d.src[koff]
		if indef && kb == cborBreak {
			d.pos++
			break
		}
		if kb&^31 != majText {
			return errorf(koff, ErrUnsupported, "map key is %s, not a text string", majorName(kb))
		}
		if d.json && i > 0 {
			d.dst = append(d.dst, ',')
		}
		_, karg, kindef, err := d.head()
		if err != nil {
			return err
		}
		ks, err := d.text(karg, kindef)
		if err != nil {
			return err
		}
		keys = append(keys, keySpan{start: ks, end: len(d.dst), off: koff})
		if d.json {
			d.dst = append(d.dst, ':')
		}
		if err := d.item(depth); err != nil {
			return err
		}
	}
	if k, dup := findDup(d.dst, keys); dup {
		return d.dupKey(k)
	}
	switch {
	case d.json:
		d.dst = append(d.dst, '}')
	case indef:
		d.dst = finishContainer(d.dst, start, majMap, i)
	}
	return nil
}

func (d *cdec) dupKey(k keySpan) error {
	enc := d.dst[k.start:k.end]
	if d.json {
		// Read the key again from the input, as canonical CBOR.
		kd := cdec{src: d.src, pos: k.off}
		_, karg, kindef, _ := kd.head()
		_, _ = kd.text(karg, kindef)
		enc = kd.dst
	}
	hl, n := textHead(enc)
	return errorf(k.off, ErrDuplicateKey, "duplicate key %s in map", quoteKey(enc[hl:hl+n]))
}

// majorName names the kind of item an initial byte starts.
func majorName(ib byte) string { return ItemKind(ib) }

// ItemKind names, for error messages, the kind of CBOR item that the initial
// byte ib starts ("a map", "a byte string", "undefined", ...).
func ItemKind(ib byte) string {
	switch ib &^ 31 {
	case majUint:
		return "an unsigned integer"
	case majNeg:
		return "a negative integer"
	case majBytes:
		return "a byte string"
	case majText:
		return "a text string"
	case majArray:
		return "an array"
	case majMap:
		return "a map"
	case majTag:
		return "a tag"
	}
	switch ib & 31 {
	case 20, 21:
		return "a boolean"
	case 22:
		return "null"
	case 23:
		return "undefined"
	case 25, 26, 27:
		return "a float"
	case 31:
		return "a break"
	}
	return "a simple value"
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s escaped for the inside of a JSON string: quote,
// backslash and control characters; \b \f \n \r \t where they exist,
// \u00XX otherwise. It checks that s is valid UTF-8; if not, it returns
// the offset in s of the first invalid byte, else -1.
func appendEscaped(dst, s []byte) ([]byte, int) {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch class[c] {
		case 1:
			i++
			continue
		case 2:
			if c < 0xe0 && i+1 < len(s) && c >= 0xc2 && s[i+1]&0xc0 == 0x80 {
				i += 2 // two-byte sequence, the common case
				continue
			}
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				return dst, i
			}
			i += n
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
		}
		i++
		start = i
	}
	return append(dst, s[start:]...), -1
}
