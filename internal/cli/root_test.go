package cli

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWarnCgoBuild(t *testing.T) {
	for _, tc := range []struct {
		cgo  bool
		want bool
	}{
		{cgo: true, want: true},
		{cgo: false, want: false},
	} {
		var buf bytes.Buffer
		warnCgoBuild(slog.New(slog.NewTextHandler(&buf, nil)), tc.cgo)
		if got := strings.Contains(buf.String(), "CGO_ENABLED=0"); got != tc.want {
			t.Errorf("cgo=%v: warned %v, want %v (log %q)", tc.cgo, got, tc.want, buf.String())
		}
	}
}
