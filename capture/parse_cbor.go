package capture

import (
	"strconv"

	"github.com/edgesync/edgesync/internal/jsoncbor"
)

// The CBOR side of the parser: a small reader of heads that walks the
// record maps and finds where each data item ends; the item itself is
// checked and made canonical by jsoncbor.FromCBOR.

// CBOR major types.
const (
	majUint   = 0
	majNeg    = 1
	majBytes  = 2
	majText   = 3
	majArray  = 4
	majMap    = 5
	majTag    = 6
	majSimple = 7
)

const cborNull = 0xf6

// maxCBORDepth bounds how deeply cborSkip recurses; jsoncbor.FromCBOR
// refuses data nested deeper than jsoncbor.MaxDepth anyway.
const maxCBORDepth = jsoncbor.MaxDepth + 1

// cborErr is a CBOR error at a byte offset of the body.
type cborErr struct {
	off int
	msg string
}

var errCBOREOF = "unexpected end of CBOR input"

// cborHead reads the head at b[off]: major type, additional information,
// argument, and the offset after the head. Indefinite lengths (ai 31) are
// returned as such for byte and text strings, arrays and maps, and as a
// break for major 7.
func cborHead(b []byte, off int) (major, ai byte, arg uint64, next int, err *cborErr) {
	if off >= len(b) {
		return 0, 0, 0, 0, &cborErr{off, errCBOREOF}
	}
	ib := b[off]
	major, ai = ib>>5, ib&31
	next = off + 1
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai <= 27:
		n := 1 << (ai - 24)
		if n > len(b)-next {
			return 0, 0, 0, 0, &cborErr{len(b), errCBOREOF}
		}
		for _, c := range b[next : next+n] {
			arg = arg<<8 | uint64(c)
		}
		next += n
	case ai == 31:
		if major == majUint || major == majNeg || major == majTag {
			return 0, 0, 0, 0, &cborErr{off, "malformed CBOR: indefinite length on " + cborKind(major, ai)}
		}
	default:
		return 0, 0, 0, 0, &cborErr{off, "malformed CBOR: reserved additional information " + strconv.Itoa(int(ai))}
	}
	return major, ai, arg, next, nil
}

// cborKind names the item with this head.
func cborKind(major, ai byte) string { return jsoncbor.ItemKind(major<<5 | ai) }

// cborSkip returns the offset after the item at b[off].
func cborSkip(b []byte, off, depth int) (int, *cborErr) {
	if depth > maxCBORDepth {
		return 0, &cborErr{off, "arrays and maps nest deeper than " + strconv.Itoa(jsoncbor.MaxDepth)}
	}
	major, ai, arg, next, err := cborHead(b, off)
	if err != nil {
		return 0, err
	}
	switch major {
	case majUint, majNeg:
		return next, nil
	case majBytes, majText:
		if ai != 31 {
			if arg > uint64(len(b)-next) {
				return 0, &cborErr{len(b), errCBOREOF}
			}
			return next + int(arg), nil
		}
		for {
			if next >= len(b) {
				return 0, &cborErr{len(b), errCBOREOF}
			}
			if b[next] == 0xff {
				return next + 1, nil
			}
			m2, ai2, n2, nx2, err := cborHead(b, next)
			if err != nil {
				return 0, err
			}
			if m2 != major || ai2 == 31 {
				return 0, &cborErr{next, "malformed CBOR: a chunk of an indefinite-length string must be a definite string of the same type"}
			}
			if n2 > uint64(len(b)-nx2) {
				return 0, &cborErr{len(b), errCBOREOF}
			}
			next = nx2 + int(n2)
		}
	case majArray, majMap:
		per := 1
		if major == majMap {
			per = 2
		}
		if ai == 31 {
			for {
				if next >= len(b) {
					return 0, &cborErr{len(b), errCBOREOF}
				}
				if b[next] == 0xff {
					return next + 1, nil
				}
				for k := 0; k < per; k++ {
					if next, err = cborSkip(b, next, depth+1); err != nil {
						return 0, err
					}
				}
			}
		}
		// Every item takes at least one byte.
		if arg > uint64(len(b)-next) {
			return 0, &cborErr{len(b), errCBOREOF}
		}
		for k := 0; k < int(arg)*per; k++ {
			if next, err = cborSkip(b, next, depth+1); err != nil {
				return 0, err
			}
		}
		return next, nil
	case majTag:
		return cborSkip(b, next, depth+1)
	}
	if ai == 31 {
		return 0, &cborErr{off, "malformed CBOR: unexpected break"}
	}
	return next, nil
}

func (p *parser) cborError(i int, field string, e *cborErr) error {
	return p.errAt(i, field, e.off, e.msg, ErrInvalid)
}

// cborBody reads one record map or an array of them.
func (p *parser) cborBody() error {
	b := p.b
	if len(b) == 0 {
		return p.bodyErr("empty body: want a record map or an array of them")
	}
	major, ai, arg, next, err := cborHead(b, 0)
	if err != nil {
		return p.cborError(-1, "", err)
	}
	switch major {
	case majMap:
		if err := p.cborRecord(0); err != nil {
			return err
		}
	case majArray:
		p.pos = next
		if ai == 31 {
			for i := 0; ; i++ {
				if p.pos >= len(b) {
					return p.cborError(i, "", &cborErr{len(b), errCBOREOF})
				}
				if b[p.pos] == 0xff {
					if i == 0 {
						return p.bodyErr("no records: the array is empty")
					}
					p.pos++
					break
				}
				if err := p.cborRecord(i); err != nil {
					return err
				}
			}
		} else {
			if arg == 0 {
				return p.bodyErr("no records: the array is empty")
			}
			if arg > uint64(len(b)-next) {
				return p.bodyErr("malformed CBOR: an array of " + strconv.FormatUint(arg, 10) + " records in " + strconv.Itoa(len(b)-next) + " bytes")
			}
			for i := 0; i < int(arg); i++ {
				if err := p.cborRecord(i); err != nil {
					return err
				}
			}
		}
	default:
		return p.bodyErr("want a record map or an array of them, got " + cborKind(major, ai))
	}
	if p.pos != len(b) {
		return p.cborError(-1, "", &cborErr{p.pos, "extra data after the CBOR item"})
	}
	return nil
}

// cborRecord scans the record map at p.pos (record i) and hands it on.
func (p *parser) cborRecord(i int) error {
	r := &p.rr
	*r = rawRecord{start: p.pos, dataKind: dataCBOR}
	p.scratch = p.scratch[:0]
	b := p.b
	major, ai, arg, next, err := cborHead(b, p.pos)
	if err != nil {
		return p.cborError(i, "", err)
	}
	if major != majMap {
		return p.cborError(i, "", &cborErr{p.pos, "a record must be a map, got " + cborKind(major, ai)})
	}
	r.headLen, r.indef = next-p.pos, ai == 31
	if !r.indef && arg > uint64(len(b)-next)/2 {
		return p.cborError(i, "", &cborErr{len(b), errCBOREOF})
	}
	p.pos = next
	for k := uint64(0); ; k++ {
		if r.indef {
			if p.pos >= len(b) {
				return p.cborError(i, "", &cborErr{len(b), errCBOREOF})
			}
			if b[p.pos] == 0xff {
				p.pos++
				break
			}
		} else if k == arg {
			break
		}
		km, kai, _, _, err := cborHead(b, p.pos)
		if err != nil {
			return p.cborError(i, "", err)
		}
		if km != majText {
			return p.cborError(i, "", &cborErr{p.pos, "field names must be text strings, got " + cborKind(km, kai)})
		}
		name, err := p.cborText()
		if err != nil {
			return p.cborError(i, "", err)
		}
		f := lookupField(name)
		if f < 0 {
			return &RecordError{Index: i, Field: fieldName(name), Msg: unknownFieldMsg, Err: ErrInvalid}
		}
		bit := uint8(1) << f
		if r.seen&bit != 0 {
			return p.fieldErr(i, f, "given twice")
		}
		r.seen |= bit
		r.pairs++
		r.valOff[f] = p.pos
		if f == fData {
			end, err := cborSkip(b, p.pos, 0)
			if err != nil {
				return p.cborError(i, "data", err)
			}
			r.data, r.set, p.pos = b[p.pos:end], r.set|bit, end
		} else {
			vm, vai, _, _, err := cborHead(b, p.pos)
			switch {
			case err != nil:
				return p.cborError(i, fieldNames[f], err)
			case vm == majText:
				s, err := p.cborText()
				if err != nil {
					return p.cborError(i, fieldNames[f], err)
				}
				r.str[f], r.set = s, r.set|bit
			case b[p.pos] == cborNull:
				p.pos++
			default:
				return p.fieldErr(i, f, "must be a text string, got "+cborKind(vm, vai))
			}
		}
		r.valEnd[f] = p.pos
	}
	return p.record(i, r)
}

// cborText reads the text string at p.pos: a slice of the body when it is
// definite, else its chunks joined in p.scratch.
func (p *parser) cborText() ([]byte, *cborErr) {
	b := p.b
	_, ai, arg, next, err := cborHead(b, p.pos)
	if err != nil {
		return nil, err
	}
	if ai != 31 {
		if arg > uint64(len(b)-next) {
			return nil, &cborErr{len(b), errCBOREOF}
		}
		p.pos = next + int(arg)
		return b[next:p.pos], nil
	}
	out := len(p.scratch)
	for {
		if next >= len(b) {
			return nil, &cborErr{len(b), errCBOREOF}
		}
		if b[next] == 0xff {
			p.pos = next + 1
			return p.scratch[out:], nil
		}
		m2, ai2, n2, nx2, err := cborHead(b, next)
		if err != nil {
			return nil, err
		}
		if m2 != majText || ai2 == 31 {
			return nil, &cborErr{next, "malformed CBOR: a chunk of an indefinite-length text string must be a definite text string"}
		}
		if n2 > uint64(len(b)-nx2) {
			return nil, &cborErr{len(b), errCBOREOF}
		}
		p.scratch = append(p.scratch, b[nx2:nx2+int(n2)]...)
		next = nx2 + int(n2)
	}
}
