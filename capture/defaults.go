package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/edgesync/edgesync/transport/wire"
)

// PutDefaults fill the stream, key and schema of records that leave them
// out or set them to null: the flags of `edgesync put --stream --key
// --schema`, and the settings of the MQTT and file sources. Empty fields
// fill nothing. A field a record sets (even to "") is never replaced.
type PutDefaults struct {
	Stream string // [A-Za-z0-9._-]{1,64}
	Key    string // at most 1024 bytes of UTF-8
	Schema string // NAME@VERSION
}

// Validate reports every problem, naming the field ("stream: ...").
func (d PutDefaults) Validate() error {
	_, err := d.compile()
	return err
}

func (d PutDefaults) compile() (*defaults, error) {
	var errs []error
	if d.Stream != "" && !wire.ValidStream(d.Stream) {
		errs = append(errs, fmt.Errorf("stream: must match [A-Za-z0-9._-]{1,64}, got %s", quoteValue([]byte(d.Stream))))
	}
	if msg := checkKey([]byte(d.Key)); msg != "" {
		errs = append(errs, fmt.Errorf("key: %s", msg))
	}
	name, ver, err := wire.ParseSchema(d.Schema)
	if err != nil {
		errs = append(errs, fmt.Errorf("schema: must be NAME@VERSION (NAME of [A-Za-z0-9._-]{1,64}, VERSION a positive integer), got %s", quoteValue([]byte(d.Schema))))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &defaults{stream: d.Stream, key: d.Key, schemaName: name, schemaVer: ver}, nil
}

// FillDefaults returns body with d's stream, key and schema written into
// every record that leaves them out (or sets them to null), in the same
// content type, and the rest of the body unchanged byte for byte. It is
// what `edgesync put` sends: the agent then parses a complete record. The
// result is checked with Parse, so a bad record is reported (with its index
// and field) before anything is sent; on any error the body is not
// returned.
func FillDefaults(contentType string, body []byte, d PutDefaults) ([]byte, error) {
	def, err := d.compile()
	if err != nil {
		return nil, err
	}
	f, err := contentFormat(contentType)
	if err != nil {
		return nil, err
	}
	values := [fData][]byte{}
	fill := []int{}
	for _, v := range [...]struct {
		f int
		s string
	}{{fStream, def.stream}, {fKey, def.key}, {fSchema, d.Schema}} {
		if v.s == "" {
			continue
		}
		fill = append(fill, v.f)
		if f == formatCBOR {
			values[v.f] = append(appendCBORHead(nil, majText, uint64(len(v.s))), v.s...)
		} else {
			values[v.f], _ = json.Marshal(v.s)
		}
	}

	type edit struct {
		off, del int
		ins      []byte
	}
	var edits []edit
	p := &parser{}
	p.reset(time.Now())
	p.visit = func(i int, r *rawRecord) error {
		var ins []byte // new fields
		added := uint64(0)
		for _, fi := range fill {
			bit := uint8(1) << fi
			switch {
			case r.seen&bit == 0:
				if f == formatCBOR {
					ins = appendCBORHead(ins, majText, uint64(len(fieldNames[fi])))
					ins = append(ins, fieldNames[fi]...)
				} else {
					if len(ins) > 0 {
						ins = append(ins, ',')
					}
					ins = append(ins, '"')
					ins = append(ins, fieldNames[fi]...)
					ins = append(ins, '"', ':')
				}
				ins = append(ins, values[fi]...)
				added++
			case r.set&bit == 0: // null: replace the value
				edits = append(edits, edit{off: r.valOff[fi], del: r.valEnd[fi] - r.valOff[fi], ins: values[fi]})
			}
		}
		if added == 0 {
			return nil
		}
		if f == formatCBOR {
			if r.indef {
				edits = append(edits, edit{off: r.start + r.headLen, ins: ins})
			} else {
				head := appendCBORHead(nil, majMap, r.pairs+added)
				edits = append(edits, edit{off: r.start, del: r.headLen, ins: append(head, ins...)})
			}
		} else {
			if r.pairs > 0 {
				ins = append(ins, ',')
			}
			edits = append(edits, edit{off: r.start + 1, ins: ins})
		}
		return nil
	}
	if err := p.parse(f, body, def); err != nil {
		return nil, err
	}
	sort.SliceStable(edits, func(a, b int) bool { return edits[a].off < edits[b].off })
	out := make([]byte, 0, len(body)+len(edits)*32)
	at := 0
	for _, e := range edits {
		out = append(out, body[at:e.off]...)
		out = append(out, e.ins...)
		at = e.off + e.del
	}
	out = append(out, body[at:]...)
	if _, err := Parse(contentType, out, time.Now()); err != nil {
		return nil, err
	}
	return out, nil
}
