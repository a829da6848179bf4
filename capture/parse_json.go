package capture

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON side of the parser: a small hand-written scanner for record
// objects. It finds the fields without building Go values; the data's text is
// handed whole to jsoncbor.FromJSON, which validates it and writes CBOR.

func (p *parser) ws() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// jsonBody reads one record object or an array of them.
func (p *parser) jsonBody() error {
	p.ws()
	if p.pos >= len(p.b) {
		return p.bodyErr("empty body: want a record object or an array of them")
	}
	switch p.b[p.pos] {
	case '{':
		if err := p.jsonRecord(0); err != nil {
			return err
		}
	case '[':
		p.pos++
		p.ws()
		if p.pos < len(p.b) && p.b[p.pos] == ']' {
			return p.bodyErr("no records: the array is empty")
		}
		for i := 0; ; i++ {
			if err := p.jsonRecord(i); err != nil {
				return err
			}
			p.ws()
			if p.pos < len(p.b) && p.b[p.pos] == ',' {
				p.pos++
				p.ws()
				continue
			}
			if p.pos < len(p.b) && p.b[p.pos] == ']' {
				p.pos++
				break
			}
			return p.syntax(i, p.pos, "after a record: want ',' or ']'")
		}
	default:
		return p.syntax(0, p.pos, "looking for a record object or an array of them")
	}
	p.ws()
	if p.pos < len(p.b) {
		return p.syntax(-1, p.pos, "after the top-level value")
	}
	return nil
}

// ndjsonBody reads one record object a line; blank lines are skipped. A line
// may end in "\r\n"; the last line needs no newline.
func (p *parser) ndjsonBody() error {
	full := p.full
	i := 0
	for start, line := 0, 1; start < len(full); line++ {
		end := bytes.IndexByte(full[start:], '\n')
		if end < 0 {
			end = len(full)
		} else {
			end += start
		}
		p.b, p.pos, p.line = full[:end], start, line
		p.ws()
		if p.pos < end {
			if err := p.jsonRecord(i); err != nil {
				return err
			}
			p.ws()
			if p.pos < end {
				return p.syntax(i, p.pos, "after the record: NDJSON takes one object a line")
			}
			i++
		}
		start = end + 1
	}
	p.line = 0
	if i == 0 {
		if len(full) == 0 {
			return p.bodyErr("empty body: want one record object a line")
		}
		return p.bodyErr("no records: every line is blank")
	}
	return nil
}

// jsonKind names the JSON value starting with c.
func jsonKind(c byte) string {
	switch {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	}
	return "invalid character " + quoteChar(c)
}

// jsonRecord scans the record object at p.pos (record i) and hands it on.
func (p *parser) jsonRecord(i int) error {
	r := &p.rr
	*r = rawRecord{start: p.pos}
	p.scratch = p.scratch[:0]
	b := p.b
	if p.pos >= len(b) {
		return p.syntax(i, p.pos, "looking for a record object")
	}
	if b[p.pos] != '{' {
		return p.errAt(i, "", p.pos, "a record must be a JSON object, got "+jsonKind(b[p.pos]), ErrInvalid)
	}
	p.pos++
	p.ws()
	if p.pos < len(b) && b[p.pos] == '}' {
		p.pos++
		return p.record(i, r)
	}
	for {
		if p.pos >= len(b) || b[p.pos] != '"' {
			return p.syntax(i, p.pos, "looking for a field name")
		}
		name, err := p.jsonString(i)
		if err != nil {
			return err
		}
		f := lookupField(name)
		if f < 0 {
			return &RecordError{Index: i, Field: fieldName(name), Line: p.line, Msg: unknownFieldMsg, Err: ErrInvalid}
		}
		bit := uint8(1) << f
		if r.seen&bit != 0 {
			return p.fieldErr(i, f, "given twice")
		}
		p.ws()
		if p.pos >= len(b) || b[p.pos] != ':' {
			return p.syntax(i, p.pos, "after a field name: want ':'")
		}
		p.pos++
		p.ws()
		if p.pos >= len(b) {
			return p.syntax(i, p.pos, "looking for a field value")
		}
		r.seen |= bit
		r.pairs++
		r.valOff[f] = p.pos
		if f == fData {
			start := p.pos
			if err := p.skipJSON(i); err != nil {
				return err
			}
			r.data, r.set = b[start:p.pos], r.set|bit
		} else {
			switch c := b[p.pos]; {
			case c == '"':
				s, err := p.jsonString(i)
				if err != nil {
					return err
				}
				r.str[f], r.set = s, r.set|bit
			case c == 'n' && bytes.HasPrefix(b[p.pos:], []byte("null")):
				p.pos += 4
			default:
				return p.fieldErr(i, f, "must be a string, got "+jsonKind(c))
			}
		}
		r.valEnd[f] = p.pos
		p.ws()
		if p.pos < len(b) {
			switch b[p.pos] {
			case ',':
				p.pos++
				p.ws()
				continue
			case '}':
				p.pos++
				return p.record(i, r)
			}
		}
		return p.syntax(i, p.pos, "after a field value: want ',' or '}'")
	}
}

// jsonString reads the string at p.pos (at its '"') and returns its
// unescaped bytes: a slice of the body when it has no escapes, else of
// p.scratch.
func (p *parser) jsonString(i int) ([]byte, error) {
	b := p.b
	start := p.pos + 1
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			p.pos = j + 1
			return b[start:j], nil
		case c == '\\':
			return p.jsonStringSlow(i, start)
		case c < 0x20:
			return nil, p.syntax(i, j, "in a string (control characters must be escaped)")
		}
	}
	return nil, p.syntax(i, len(b), "in a string")
}

func (p *parser) jsonStringSlow(i, start int) ([]byte, error) {
	b := p.b
	out := len(p.scratch)
	for j := start; j < len(b); {
		c := b[j]
		switch {
		case c == '"':
			p.pos = j + 1
			return p.scratch[out:], nil
		case c < 0x20:
			return nil, p.syntax(i, j, "in a string (control characters must be escaped)")
		case c != '\\':
			p.scratch = append(p.scratch, c)
			j++
			continue
		}
		if j+1 >= len(b) {
			return nil, p.syntax(i, len(b), "in a string escape")
		}
		switch e := b[j+1]; e {
		case '"', '\\', '/':
			p.scratch = append(p.scratch, e)
		case 'b':
			p.scratch = append(p.scratch, '\b')
		case 'f':
			p.scratch = append(p.scratch, '\f')
		case 'n':
			p.scratch = append(p.scratch, '\n')
		case 'r':
			p.scratch = append(p.scratch, '\r')
		case 't':
			p.scratch = append(p.scratch, '\t')
		case 'u':
			r, ok := hex4(b, j+2)
			if !ok {
				return nil, p.syntax(i, j, "in a \\u escape (want 4 hex digits)")
			}
			n := 6
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if j+12 <= len(b) && b[j+6] == '\\' && b[j+7] == 'u' {
					r2, ok = hex4(b, j+8)
				}
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					return nil, p.errAt(i, "", j, "invalid \\u escape: a lone UTF-16 surrogate", ErrInvalid)
				}
				r, n = dec, 12
			}
			p.scratch = utf8.AppendRune(p.scratch, r)
			j += n
			continue
		default:
			return nil, p.syntax(i, j+1, "in a string escape")
		}
		j += 2
	}
	return nil, p.syntax(i, len(b), "in a string")
}

// hex4 reads 4 hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipJSON moves p.pos past the value at p.pos. It finds where a well-formed
// value ends (strings, nesting); the value itself is checked later by
// jsoncbor.FromJSON.
func (p *parser) skipJSON(i int) error {
	b := p.b
	j := p.pos
	switch b[j] {
	case '"':
		end := skipString(b, j)
		if end < 0 {
			return p.syntax(i, len(b), "in a string")
		}
		p.pos = end
		return nil
	case '{', '[':
		depth := 0
		for j < len(b) {
			switch b[j] {
			case '"':
				end := skipString(b, j)
				if end < 0 {
					return p.syntax(i, len(b), "in a string")
				}
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.pos = j + 1
					return nil
				}
			}
			j++
		}
		return p.syntax(i, len(b), "in the data")
	}
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			if j == p.pos {
				return p.syntax(i, j, "looking for the data")
			}
			p.pos = j
			return nil
		}
		j++
	}
	p.pos = j
	return nil
}

// skipString returns the offset after the string starting at b[j] (a '"'),
// or -1 when it does not end.
func skipString(b []byte, j int) int {
	k := j + 1
	for {
		q := bytes.IndexByte(b[k:], '"')
		if q < 0 {
			return -1
		}
		k += q
		// The quote ends the string unless an odd number of backslashes
		// precede it.
		n := 0
		for k-1-n > j && b[k-1-n] == '\\' {
			n++
		}
		k++
		if n%2 == 0 {
			return k
		}
	}
}
