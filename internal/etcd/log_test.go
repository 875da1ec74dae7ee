package etcd

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
)

func TestSlogCore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		quiet   bool
		log     func(l *zap.Logger)
		want    string // substring expected in the output; "" means nothing logged
		wantLvl string
	}{
		{name: "warn passes with fields", log: func(l *zap.Logger) { l.Warn("slow apply", zap.Int("took-ms", 120)) }, want: "took-ms=120", wantLvl: "level=WARN"},
		{name: "info dropped", log: func(l *zap.Logger) { l.Info("started") }},
		{name: "benign warning dropped", log: func(l *zap.Logger) { l.Warn("simple token is not cryptographically signed") }},
		{name: "first start race demoted", log: func(l *zap.Logger) {
			l.Error("failed to update storage version", zap.Error(errors.New("missing term information")))
		}},
		{name: "error while stopping dropped", quiet: true, log: func(l *zap.Logger) { l.Error("serving failed", zap.Error(errors.New("closed"))) }},
		{name: "error passes", log: func(l *zap.Logger) { l.Error("disk full", zap.Error(errors.New("ENOSPC"))) }, want: "ENOSPC", wantLvl: "level=ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			q := new(atomic.Bool)
			q.Store(tt.quiet)
			l := zap.New(newSlogCore(slog.New(slog.NewTextHandler(&buf, nil)), zapLevel(slog.LevelWarn), q, nil))
			tt.log(l.With(zap.String("member", "m1")))
			out := buf.String()
			if tt.want == "" {
				if out != "" {
					t.Errorf("logged %q, want nothing", out)
				}
				return
			}
			if !strings.Contains(out, tt.want) || !strings.Contains(out, tt.wantLvl) || !strings.Contains(out, "member=m1") {
				t.Errorf("logged %q, want %q at %s with member=m1", out, tt.want, tt.wantLvl)
			}
		})
	}
}
