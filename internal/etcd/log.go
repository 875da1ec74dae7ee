package etcd

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that forwards etcd's zap records to slog, so
// the binary has one log stream and one format.
type slogCore struct {
	log   *slog.Logger
	level zapcore.Level
	// quiet is set while the member shuts down: etcd reports its listeners
	// closing as errors, which is only noise when we asked it to stop.
	quiet *atomic.Bool
	// removed is set when etcd says this member was removed from its
	// cluster. etcd has no API for it: the server just stops, after this
	// log line, whether it applied its own removal or its peers refused it
	// on a restart.
	removed *atomic.Bool
}

// removedMessage is what etcd logs, and only then, when it stops because
// its member was removed from the cluster.
const removedMessage = "data-dir used by this member must be removed"

func newSlogCore(log *slog.Logger, level zapcore.Level, quiet, removed *atomic.Bool) zapcore.Core {
	return &slogCore{log: log, level: level, quiet: quiet, removed: removed}
}

// benign are etcd messages (or their starts) that every embedded start
// prints and that say nothing actionable here: one port serves HTTP and
// gRPC on purpose, auth (and so its token) is unused, we keep the data
// dir's permissions, a restarted single member retries its first
// campaign one election timeout later once its membership is applied,
// and a joining member's early promotion attempts are refused.
var benign = []string{
	"Running http and grpc server on single port.",
	"simple token is not cryptographically signed",
	"check file permission",
	"cannot campaign at term",
	// A joining member asks to be promoted until the leader finds it
	// caught up; Promote reports the last refusal if it never is.
	"rejecting promote learner: learner is not ready",
	"failed to promote a member",
}

func isBenign(msg string) bool {
	for _, b := range benign {
		if strings.HasPrefix(msg, b) || strings.Contains(msg, " "+b) {
			return true
		}
	}
	return false
}

// Enabled implements zapcore.LevelEnabler. Warnings are always let
// through to Check, which must see the removal warning whatever the
// configured level.
func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.level || l >= zapcore.WarnLevel }

// With implements zapcore.Core.
func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{log: c.log.With(attrs(fields)...), level: c.level, quiet: c.quiet, removed: c.removed}
}

// Check implements zapcore.Core; it notes a removal, drops benign
// messages and, while stopping, everything below DPanic.
func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Message == removedMessage && c.removed != nil {
		c.removed.Store(true)
	}
	if e.Level >= c.level && !isBenign(e.Message) && (e.Level >= zapcore.DPanicLevel || !c.quiet.Load()) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write implements zapcore.Core.
func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slogLevel(e.Level)
	if firstStartRace(fields) {
		level = slog.LevelDebug
	}
	c.log.Log(context.Background(), level, e.Message, attrs(fields)...)
	return nil
}

// firstStartRace reports the storage-version check that a new member runs
// before its first backend commit has recorded the raft term. etcd retries
// it a few seconds later, so the failure is not worth an error line.
func firstStartRace(fields []zapcore.Field) bool {
	for _, f := range fields {
		if f.Type == zapcore.ErrorType {
			if err, ok := f.Interface.(error); ok && strings.Contains(err.Error(), "missing term information") {
				return true
			}
		}
	}
	return false
}

// Sync implements zapcore.Core; slog handlers do not buffer.
func (c *slogCore) Sync() error { return nil }

// attrs renders zap fields through zap's own map encoder, which knows every
// field type, and hands the result to slog as key/value pairs.
func attrs(fields []zapcore.Field) []any {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, k, enc.Fields[k])
	}
	return out
}

// zapLevel maps a slog threshold onto the nearest zap level.
func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	default:
		return zapcore.DebugLevel
	}
}

// slogLevel maps a zap level onto slog's.
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l >= zapcore.WarnLevel:
		return slog.LevelWarn
	case l >= zapcore.InfoLevel:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
