package jsoncbor

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits on inputs.
const (
	// MaxDepth is how deeply arrays and objects (maps) may nest: a value
	// inside MaxDepth containers is accepted, one more is ErrDepth.
	MaxDepth = 64
	// MaxLen is the longest input FromJSON, FromCBOR and Valid accept, in
	// bytes; longer is ErrTooLarge. ToJSON has no length limit (its output
	// is at most about 8 times its input).
	MaxLen = 1 << 20
)

// FromJSON transcodes one JSON value (RFC 8259) in src to CBOR and appends
// it to dst. Whitespace may surround the value; anything else after it is
// an error. On error it returns dst unchanged in length (bytes past
// len(dst) in its array may have been written) and an *Error.
// The mapping is described in the package documentation.
func FromJSON(dst, src []byte) ([]byte, error) {
	if len(src) > MaxLen {
		return dst, errorf(MaxLen, ErrTooLarge, "input of %d bytes exceeds the limit of %d", len(src), MaxLen)
	}
	d := jdec{src: src, dst: dst}
	d.skipWS()
	if err := d.value(0); err != nil {
		return dst, err
	}
	d.skipWS()
	if d.pos < len(src) {
		return dst, d.syntax(d.pos, "after top-level value")
	}
	return d.dst, nil
}

// jdec is the state of one FromJSON call.
type jdec struct {
	src []byte
	pos int
	dst []byte
}

func (d *jdec) eof() error {
	return errorf(len(d.src), ErrSyntax, "unexpected end of JSON input")
}

// syntax reports the byte at off as invalid in the named context.
func (d *jdec) syntax(off int, context string) error {
	if off >= len(d.src) {
		return d.eof()
	}
	return errorf(off, ErrSyntax, "invalid character %s %s", quoteChar(d.src[off]), context)
}

func (d *jdec) skipWS() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value transcodes the value at d.pos, which is inside depth containers.
func (d *jdec) value(depth int) error {
	if d.pos >= len(d.src) {
		return d.eof()
	}
	switch c := d.src[d.pos]; c {
	case '{':
		return d.object(depth + 1)
	case '[':
		return d.array(depth + 1)
	case '"':
		return d.str()
	case 't':
		return d.literal("true", cborTrue)
	case 'f':
		return d.literal("false", cborFalse)
	case 'n':
		return d.literal("null", cborNull)
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return d.number()
		}
		return d.syntax(d.pos, "looking for beginning of value")
	}
}

func (d *jdec) literal(lit string, b byte) error {
	for k := 0; k < len(lit); k++ {
		if d.pos+k >= len(d.src) {
			return d.eof()
		}
		if d.src[d.pos+k] != lit[k] {
			return d.syntax(d.pos+k, "in literal "+lit)
		}
	}
	d.pos += len(lit)
	d.dst = append(d.dst, b)
	return nil
}

func (d *jdec) array(depth int) error {
	if depth > MaxDepth {
		return errorf(d.pos, ErrDepth, "arrays and objects nest deeper than %d", MaxDepth)
	}
	d.pos++ // '['
	start := len(d.dst)
	d.dst = append(d.dst, majArray)
	d.skipWS()
	if d.pos < len(d.src) && d.src[d.pos] == ']' {
		d.pos++
		return nil
	}
	var n uint64
	for {
		if err := d.value(depth); err != nil {
			return err
		}
		n++
		d.skipWS()
		if d.pos >= len(d.src) {
			return d.eof()
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
			d.skipWS()
		case ']':
			d.pos++
			d.dst = finishContainer(d.dst, start, majArray, n)
			return nil
		default:
			return d.syntax(d.pos, "after array element")
		}
	}
}

func (d *jdec) object(depth int) error {
	if depth > MaxDepth {
		return errorf(d.pos, ErrDepth, "arrays and objects nest deeper than %d", MaxDepth)
	}
	d.pos++ // '{'
	start := len(d.dst)
	d.dst = append(d.dst, majMap)
	d.skipWS()
	if d.pos < len(d.src) && d.src[d.pos] == '}' {
		d.pos++
		return nil
	}
	var small [smallKeys]keySpan
	keys := small[:0]
	for {
		if d.pos >= len(d.src) {
			return d.eof()
		}
		if d.src[d.pos] != '"' {
			return d.syntax(d.pos, "looking for beginning of object key string")
		}
		off, ks := d.pos, len(d.dst)
		if err := d.str(); err != nil {
			return err
		}
		keys = append(keys, keySpan{start: ks, end: len(d.dst), off: off})
		d.skipWS()
		if d.pos >= len(d.src) {
			return d.eof()
		}
		if d.src[d.pos] != ':' {
			return d.syntax(d.pos, "after object key")
		}
		d.pos++
		d.skipWS()
		if err := d.value(depth); err != nil {
			return err
		}
		d.skipWS()
		if d.pos >= len(d.src) {
			return d.eof()
		}
		switch d.src[d.pos] {
		case ',':
			d.pos++
			d.skipWS()
		case '}':
			d.pos++
			if k, dup := findDup(d.dst, keys); dup {
				return d.dupKey(k)
			}
			d.dst = finishContainer(d.dst, start, majMap, uint64(len(keys)))
			return nil
		default:
			return d.syntax(d.pos, "after object key:value pair")
		}
	}
}

func (d *jdec) dupKey(k keySpan) error {
	enc := d.dst[k.start:k.end]
	hl, n := textHead(enc)
	return errorf(k.off, ErrDuplicateKey, "duplicate key %s in object", quoteKey(enc[hl:hl+n]))
}

// textHead decodes the head of a text string this package wrote: the
// head's length and the string's.
func textHead(b []byte) (hl int, n int) {
	ai := b[0] & 31
	if ai < 24 {
		return 1, int(ai)
	}
	hl = 1 + 1<<(ai-24)
	for _, c := range b[1:hl] {
		n = n<<8 | int(c)
	}
	return hl, n
}

// class sorts the bytes of a JSON string: quote, backslash and control
// characters (0), other ASCII (1), non-ASCII (2).
var class = func() (t [256]uint8) {
	for c := 0x20; c < 256; c++ {
		switch {
		case c == '"' || c == '\\':
		case c < 0x80:
			t[c] = 1
		default:
			t[c] = 2
		}
	}
	return t
}()

// str transcodes the string at d.pos (at its opening quote).
func (d *jdec) str() error {
	src := d.src
	start := d.pos + 1
	i := start
	esc, ascii := false, true
	for {
		for i < len(src) && class[src[i]] == 1 {
			i++
		}
		if i >= len(src) {
			return d.eof()
		}
		c := src[i]
		if c == '"' {
			break
		}
		if c == '\\' {
			esc = true
			i += 2
			continue
		}
		if c >= 0x80 {
			ascii = false
			i++
			continue
		}
		return d.syntax(i, "in string literal")
	}
	raw := src[start:i]
	d.pos = i + 1
	if !esc {
		if !ascii && !utf8.Valid(raw) {
			return errorf(start+invalidUTF8At(raw), ErrInvalidUTF8, "invalid UTF-8 in string")
		}
		d.dst = appendHead(d.dst, majText, uint64(len(raw)))
		d.dst = append(d.dst, raw...)
		return nil
	}
	return d.unescape(start, raw)
}

// unescape transcodes the content raw of a string with escapes, which
// starts at src offset start. The decoded string is never longer than raw.
func (d *jdec) unescape(start int, raw []byte) error {
	h := len(d.dst)
	reserved := headLen(uint64(len(raw)))
	b := grow(d.dst, reserved)
	for i := 0; i < len(raw); {
		j := i
		for j < len(raw) && raw[j] != '\\' {
			j++
		}
		if j > i {
			run := raw[i:j]
			if !utf8.Valid(run) {
				return errorf(start+i+invalidUTF8At(run), ErrInvalidUTF8, "invalid UTF-8 in string")
			}
			b = append(b, run...)
		}
		if j == len(raw) {
			break
		}
		// raw[j] is a backslash; str guarantees a byte follows it.
		switch c := raw[j+1]; c {
		case '"', '\\', '/':
			b = append(b, c)
			i = j + 2
		case 'b':
			b = append(b, '\b')
			i = j + 2
		case 'f':
			b = append(b, '\f')
			i = j + 2
		case 'n':
			b = append(b, '\n')
			i = j + 2
		case 'r':
			b = append(b, '\r')
			i = j + 2
		case 't':
			b = append(b, '\t')
			i = j + 2
		case 'u':
			r, err := d.hex4(raw, j+2, start)
			if err != nil {
				return err
			}
			i = j + 6
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return errorf(start+j, ErrInvalidUTF8, "lone surrogate \\u%04x in string escape", r)
			case r >= 0xd800 && r <= 0xdbff:
				if i+1 >= len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return errorf(start+j, ErrInvalidUTF8, "lone surrogate \\u%04x in string escape", r)
				}
				r2, err := d.hex4(raw, i+2, start)
				if err != nil {
					return err
				}
				if r2 < 0xdc00 || r2 > 0xdfff {
					return errorf(start+j, ErrInvalidUTF8, "lone surrogate \\u%04x in string escape", r)
				}
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			b = utf8.AppendRune(b, r)
		default:
			return d.syntax(start+j+1, "in string escape code")
		}
	}
	d.dst = finishString(b, h, reserved)
	return nil
}

// hex4 reads the four hex digits of a \u escape at raw[i:].
func (d *jdec) hex4(raw []byte, i, start int) (rune, error) {
	var r rune
	for k := i; k < i+4; k++ {
		if k >= len(raw) {
			// The closing quote (or the end) follows the string content.
			return 0, d.syntax(start+k, "in \\u hexadecimal character escape")
		}
		c := raw[k]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, d.syntax(start+k, "in \\u hexadecimal character escape")
		}
		r = r<<4 | rune(c)
	}
	return r, nil
}

// number transcodes the number at d.pos.
func (d *jdec) number() error {
	src := d.src
	start := d.pos
	i := start
	neg := false
	if src[i] == '-' {
		neg = true
		i++
	}
	if i >= len(src) {
		return d.eof()
	}
	var u uint64
	overflow := false
	switch c := src[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			v := uint64(src[i] - '0')
			if u > (math.MaxUint64-v)/10 {
				overflow = true
			} else {
				u = u*10 + v
			}
			i++
		}
	default:
		return d.syntax(i, "in numeric literal")
	}
	isFloat := false
	if i < len(src) && src[i] == '.' {
		isFloat = true
		i++
		if i >= len(src) {
			return d.eof()
		}
		if src[i] < '0' || src[i] > '9' {
			return d.syntax(i, "after decimal point in numeric literal")
		}
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		isFloat = true
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		if i >= len(src) {
			return d.eof()
		}
		if src[i] < '0' || src[i] > '9' {
			return d.syntax(i, "in exponent of numeric literal")
		}
		for i < len(src) && src[i] >= '0' && src[i] <= '9' {
			i++
		}
	}
	d.pos = i
	if !isFloat && !overflow {
		switch {
		case !neg:
			d.dst = appendHead(d.dst, majUint, u)
			return nil
		case u == 0: // -0 is the integer 0
			d.dst = append(d.dst, majUint)
			return nil
		case u <= 1<<63:
			d.dst = appendHead(d.dst, majNeg, u-1)
			return nil
		}
	}
	f, err := strconv.ParseFloat(string(src[start:i]), 64)
	if err != nil {
		text := src[start:i]
		if len(text) > 40 {
			text = text[:40]
		}
		return errorf(start, ErrRange, "number %s is out of the range of float64", text)
	}
	d.dst = appendFloat(d.dst, f)
	return nil
}
