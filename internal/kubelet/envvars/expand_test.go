package envvars

import "testing"

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "alpha", "B": "beta", "EMPTY": "", "": "blank"}
	tests := []struct {
		name, in, want string
	}{
		{"no references", "plain text", "plain text"},
		{"empty", "", ""},
		{"one reference", "$(A)", "alpha"},
		{"embedded references", "x-$(A)-$(B)-y", "x-alpha-beta-y"},
		{"adjacent references", "$(A)$(B)", "alphabeta"},
		{"empty value", "[$(EMPTY)]", "[]"},
		{"unknown kept verbatim", "$(NOPE) $(A)", "$(NOPE) alpha"},
		{"escaped operator", "$$(A)", "$(A)"},
		{"double escape then reference", "$$$(A)", "$alpha"},
		{"two dollars", "$$", "$"},
		{"trailing dollar", "cost $", "cost $"},
		{"dollar before plain char", "$A $(A)", "$A alpha"},
		{"dollar before closer", "$)", "$)"},
		{"unterminated reference", "$(A", "$(A"},
		{"name runs to the first closer", "$($(A)", "$($(A)"},
		{"unterminated after text", "x$(A y", "x$(A y"},
		{"unterminated then escape", "$($$", "$($"},
		{"empty name looked up", "$()", "blank"},
		{"nested parens end at first closer", "$(A(B))", "$(A(B))"},
		{"value not re-expanded", "$(X)", "$(A)"},
		{"multibyte after dollar", "$é", "$é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := env
			if tt.name == "value not re-expanded" {
				m = map[string]string{"X": "$(A)", "A": "alpha"}
			}
			if got := Expand(tt.in, m); got != tt.want {
				t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
