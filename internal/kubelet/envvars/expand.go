package envvars

import "strings"

// Expand replaces each $(NAME) in s with env[NAME], the way the kubelet
// expands container commands, args and env values: a reference to a name
// env lacks is kept verbatim (so a typo shows up in the container rather
// than silently vanishing), "$$" is an escaped "$", and a "$" that starts
// neither form is kept as is, as is an unterminated "$(".
func Expand(s string, env map[string]string) string {
	return expand(s, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
}

// expand is Expand over a lookup function, so callers holding variables
// in another structure need not copy them into a map.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		// A trailing "$" has nothing to introduce, so it is literal.
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unterminated: keep "$(" and scan on after it, so a later
				// well-formed reference is still expanded.
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			// "$x" is not an expression: both characters are kept and
			// neither can start one, matching the upstream scanner.
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}
