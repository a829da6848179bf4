package capture

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// topicTemplate makes a stream or key from an MQTT topic. It is text with
// placeholders: {1}, {2}, ... stand for the topic's levels (1-based: in
// "plant/line-3/temp", {1} is "plant" and {3} is "temp"), {topic} for the
// whole topic. Everything else is literal; "plant-{2}" makes "plant-line-3".
type topicTemplate []tmplPart

type tmplPart struct {
	lit   string
	level int // 0: lit; > 0: that level; -1: the whole topic
}

// maxTemplateLevel bounds {N}.
const maxTemplateLevel = 64

func parseTemplate(s string) (topicTemplate, error) {
	var t topicTemplate
	for s != "" {
		open := strings.IndexByte(s, '{')
		if close := strings.IndexByte(s, '}'); close >= 0 && (open < 0 || close < open) {
			return nil, errors.New("unbalanced '}'")
		}
		if open < 0 {
			t = append(t, tmplPart{lit: s})
			break
		}
		if open > 0 {
			t = append(t, tmplPart{lit: s[:open]})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, errors.New("unclosed '{'")
		}
		name := s[open+1 : open+end]
		switch n, err := strconv.Atoi(name); {
		case name == "topic":
			t = append(t, tmplPart{level: -1})
		case err == nil && n >= 1 && n <= maxTemplateLevel && name[0] != '0' && name[0] != '+':
			t = append(t, tmplPart{level: n})
		default:
			return nil, fmt.Errorf("unknown placeholder {%s}: use {1}..{%d} for a topic level or {topic}", name, maxTemplateLevel)
		}
		s = s[open+end+1:]
	}
	return t, nil
}

// literal returns the template's text when it has no placeholder.
func (t topicTemplate) literal() (string, bool) {
	switch {
	case len(t) == 0:
		return "", true
	case len(t) == 1 && t[0].level == 0:
		return t[0].lit, true
	}
	return "", false
}

// expand fills the template from topic; ok is false when the topic has
// fewer levels than a placeholder names. A template of one part returns a
// substring of topic or the literal, without allocating.
func (t topicTemplate) expand(topic string) (s string, missing int) {
	if len(t) == 1 {
		return t[0].value(topic)
	}
	var b strings.Builder
	for _, p := range t {
		v, m := p.value(topic)
		if m != 0 {
			return "", m
		}
		b.WriteString(v)
	}
	return b.String(), 0
}

// value is the part's text, or (_, level) when topic lacks that level.
func (p tmplPart) value(topic string) (string, int) {
	switch {
	case p.level == 0:
		return p.lit, 0
	case p.level < 0:
		return topic, 0
	}
	rest := topic
	for k := 1; ; k++ {
		i := strings.IndexByte(rest, '/')
		if k == p.level {
			if i < 0 {
				return rest, 0
			}
			return rest[:i], 0
		}
		if i < 0 {
			return "", p.level
		}
		rest = rest[i+1:]
	}
}

// validTopicFilter reports what is wrong with an MQTT topic filter, or "".
func validTopicFilter(f string) string {
	if f == "" {
		return "empty topic filter"
	}
	if len(f) > 65535 {
		return "topic filter longer than 65535 bytes"
	}
	if strings.ContainsRune(f, 0) {
		return "topic filter contains NUL"
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return "'#' must be a whole level and the last one"
		}
		if strings.Contains(l, "+") && l != "+" {
			return "'+' must be a whole level"
		}
	}
	return ""
}
