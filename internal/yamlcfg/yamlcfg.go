// Package yamlcfg decodes configuration files strictly and reports every
// problem at once, each naming its key ("outbox.max_bytes") and line.
package yamlcfg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decode decodes b into v, refusing unknown keys. The error joins one line
// per problem: "config: outbox.max_bytes (line 5): ...".
func Decode(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return errors.New("config: the file is empty")
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	paths := linePaths(b)
	errs := make([]error, 0, len(te.Errors))
	for _, e := range te.Errors {
		errs = append(errs, errors.New("config: "+describe(e, paths)))
	}
	return &partialError{errors.Join(errs...)}
}

// partialError: the file was read, but some keys were wrong; v holds the rest.
type partialError struct{ err error }

func (e *partialError) Error() string { return e.err.Error() }
func (e *partialError) Unwrap() error { return e.err }

// Partial reports whether err from Decode left the rest of the file decoded
// (unknown keys, wrong values), so that validation can report its problems
// too; false for syntax errors and an empty file.
func Partial(err error) bool {
	var p *partialError
	return errors.As(err, &p)
}

var (
	lineRe    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// describe turns "line 7: field bogus not found in type agent.Config" into
// "bogus (line 7): unknown key".
func describe(e string, paths map[int]string) string {
	m := lineRe.FindStringSubmatch(e)
	if m == nil {
		return e
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if u := unknownRe.FindStringSubmatch(msg); u != nil {
		msg = "unknown key"
	}
	msg = strings.Replace(msg, "cannot unmarshal !!str", "cannot read", 1)
	if p, ok := paths[line]; ok {
		return fmt.Sprintf("%s (line %d): %s", p, line, msg)
	}
	return fmt.Sprintf("line %d: %s", line, msg)
}

// linePaths maps each line holding a key to the key's dotted path. For a
// sequence item the index is shown: sources.mqtt[0].topics.
func linePaths(b []byte) map[int]string {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil
	}
	out := map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				out[k.Line] = p
				if v.Line != k.Line || v.Kind == yaml.ScalarNode {
					if _, seen := out[v.Line]; !seen || v.Kind == yaml.ScalarNode {
						out[v.Line] = p
					}
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, seen := out[c.Line]; !seen {
					out[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	return out
}

// Written reports whether the YAML mapping doc (as decoded into a
// map[string]any) gives the dotted key path ("outbox.max_bytes") a value.
// A key written with no value (null) does not count.
func Written(doc map[string]any, path string) bool {
	var cur any = doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return cur != nil
}

// ZeroCheck is a key whose zero value stands for "use the default": Zero
// says whether the decoded value is zero.
type ZeroCheck struct {
	Key  string
	Zero bool
	Hint string // appended to the error when set
}

// ExplicitZeros reports, one error each, the keys of checks that doc writes
// as zero (0, 0s, 0B): left out they get their default, but written as zero
// they would silently get it too, which is not what the file says.
func ExplicitZeros(doc map[string]any, checks []ZeroCheck) error {
	var errs []error
	for _, c := range checks {
		if c.Zero && Written(doc, c.Key) {
			hint := "leave it out for the default"
			if c.Hint != "" {
				hint += "; " + c.Hint
			}
			errs = append(errs, fmt.Errorf("config: %s: must be > 0 (%s)", c.Key, hint))
		}
	}
	return errors.Join(errs...)
}
