package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"
)

// How a follower waits for more log: it polls the file (no inotify
// dependency, and a follower costs one read per poll) and asks the runtime
// now and then whether the container still runs.
const (
	followPoll     = 100 * time.Millisecond
	statusInterval = time.Second
)

// logRecord is one line of a CRI container log file:
//
//	2016-10-06T00:17:09.669794202Z stdout F the text
//
// The tag is F for a full line or P for a fragment the runtime split off a
// long or unterminated line; the fragments and the F after them make one
// line.
type logRecord struct {
	time    time.Time
	stream  string
	partial bool
	content []byte
}

// parseRecord parses one line of a CRI log file, without its newline.
func parseRecord(line []byte) (logRecord, error) {
	var rec logRecord
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return rec, fmt.Errorf("no stream in log line %q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return rec, fmt.Errorf("log line timestamp: %w", err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return rec, fmt.Errorf("no tag in log line %q", line)
	}
	if s := string(stream); s != "stdout" && s != "stderr" {
		return rec, fmt.Errorf("unknown stream %q in log line", s)
	}
	// The content may be empty, with or without the space before it.
	tags, content, _ := bytes.Cut(rest, []byte{' '})
	// Tags are ':'-separated; the first says full or partial.
	tag, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(tag) {
	case "F":
	case "P":
		rec.partial = true
	default:
		return rec, fmt.Errorf("unknown tag %q in log line", tag)
	}
	rec.time, rec.stream, rec.content = t, string(stream), content
	return rec, nil
}

// logOptions are the containerLogs query parameters.
type logOptions struct {
	follow, timestamps bool
	// tailLines < 0 means every line.
	tailLines int64
	// limitBytes <= 0 means no limit.
	limitBytes int64
	// since, when set, drops lines older than it.
	since time.Time
	// stream is "stdout" or "stderr" to show only that stream; "" shows
	// both.
	stream string
}

// errLimit ends a copy that has written limitBytes.
var errLimit = errors.New("byte limit reached")

// limitWriter writes at most n bytes, then fails with errLimit.
type limitWriter struct {
	w io.Writer
	n int64 // < 0: unlimited
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n < 0 {
		return l.w.Write(p)
	}
	if l.n == 0 {
		return 0, errLimit
	}
	short := int64(len(p)) > l.n
	if short {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && short {
		err = errLimit
	}
	return n, err
}

// pendingLine is a line whose fragments are still arriving.
type pendingLine struct {
	time time.Time
	buf  []byte
	// shown: its start has been written already (a follower shows a
	// fragment at once rather than wait for the rest of the line), so
	// what follows goes out without a timestamp.
	shown bool
}

// assembler joins records into lines, filters and formats them, and
// writes them, or holds the last tailLines of them until the first pass
// over the file ends.
type assembler struct {
	opts    logOptions
	out     io.Writer
	log     *slog.Logger
	pending map[string]*pendingLine
	// tail holds formatted lines during the first pass when tailLines is
	// set; nil once they are written.
	tail [][]byte
	// tailing is true during the first pass with tailLines set.
	tailing bool
}

func newAssembler(opts logOptions, out io.Writer, log *slog.Logger) *assembler {
	return &assembler{opts: opts, out: out, log: log, pending: map[string]*pendingLine{}, tailing: opts.tailLines >= 0}
}

// record takes one line of the file, without its newline.
func (a *assembler) record(line []byte) error {
	rec, err := parseRecord(line)
	if err != nil {
		// One corrupt line (a crash mid-write) should not hide the rest.
		a.log.Debug("skipping unparsable log line", "err", err)
		return nil
	}
	if a.opts.stream != "" && rec.stream != a.opts.stream {
		return nil
	}
	p := a.pending[rec.stream]
	if p == nil {
		p = &pendingLine{time: rec.time}
		a.pending[rec.stream] = p
	}
	p.buf = append(p.buf, rec.content...)
	if rec.partial {
		return nil
	}
	delete(a.pending, rec.stream)
	return a.emit(p.time, append(p.buf, '\n'), p.shown)
}

// emit writes (or, while tailing, keeps) one line or a line's piece.
func (a *assembler) emit(t time.Time, content []byte, continued bool) error {
	if !a.opts.since.IsZero() && t.Before(a.opts.since) {
		return nil
	}
	if a.opts.timestamps && !continued {
		content = append([]byte(t.Format(time.RFC3339Nano)+" "), content...)
	}
	if a.tailing {
		if a.opts.tailLines == 0 {
			return nil
		}
		if int64(len(a.tail)) == a.opts.tailLines {
			a.tail = a.tail[1:]
		}
		a.tail = append(a.tail, content)
		return nil
	}
	_, err := a.out.Write(content)
	return err
}

// caughtUp is called whenever the reader reaches the end of the file: the
// fragments of unfinished lines are shown (a prompt without a newline is
// output too), and after the first pass the tail is written.
func (a *assembler) caughtUp() error {
	streams := make([]string, 0, len(a.pending))
	for s := range a.pending {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	for _, s := range streams {
		p := a.pending[s]
		if len(p.buf) == 0 {
			continue
		}
		if err := a.emit(p.time, p.buf, p.shown); err != nil {
			return err
		}
		p.buf, p.shown = nil, true
	}
	if a.tailing {
		a.tailing = false
		for _, l := range a.tail {
			if _, err := a.out.Write(l); err != nil {
				return err
			}
		}
		a.tail = nil
	}
	return nil
}

// logFile reads a log file that may not exist yet and may be replaced
// (rotated) while followed.
type logFile struct {
	path string
	f    *os.File
	r    *bufio.Reader
	// carry is an incomplete last line, kept until its newline arrives.
	carry []byte
}

func (l *logFile) open() error {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // no output yet; a follower tries again
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	l.f, l.r, l.carry = f, bufio.NewReaderSize(f, 64<<10), nil
	return nil
}

func (l *logFile) close() {
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// readAll passes every complete line available to fn.
func (l *logFile) readAll(fn func([]byte) error) error {
	if l.f == nil {
		return nil
	}
	for {
		line, err := l.r.ReadBytes('\n')
		if err == io.EOF {
			l.carry = append(l.carry, line...)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if len(l.carry) > 0 {
			line = append(l.carry, line...)
			l.carry = nil
		}
		if err := fn(line[:len(line)-1]); err != nil {
			return err
		}
	}
}

// replaced reports whether the path now names another file than the open
// one (rotation), or names a file at all when none was open.
func (l *logFile) replaced() bool {
	st, err := os.Stat(l.path)
	if err != nil {
		return false
	}
	if l.f == nil {
		return true
	}
	cur, err := l.f.Stat()
	return err == nil && !os.SameFile(cur, st)
}

// copyLog writes the log at path to w as opts say. With follow it keeps
// going, flushing as it catches up, until ctx ends or running reports the
// container stopped (after a last read).
func copyLog(ctx context.Context, w io.Writer, flush func(), path string, opts logOptions, running func(context.Context) bool, log *slog.Logger) error {
	limit := opts.limitBytes
	if limit <= 0 {
		limit = -1
	}
	a := newAssembler(opts, &limitWriter{w: w, n: limit}, log)
	lf := &logFile{path: path}
	if err := lf.open(); err != nil {
		return err
	}
	defer lf.close()

	// The first check comes at the first poll: a follower of a container
	// that has already exited should not wait long.
	var lastCheck time.Time
	stopped := false
	var tick *time.Ticker
	for {
		err := lf.readAll(a.record)
		if err == nil {
			err = a.caughtUp()
		}
		if errors.Is(err, errLimit) {
			return nil
		}
		if err != nil {
			return err
		}
		flush()
		if !opts.follow || stopped {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(followPoll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if time.Since(lastCheck) >= statusInterval {
			lastCheck = time.Now()
			// Read once more after the container stops: its last
			// lines may have landed since this pass.
			stopped = !running(ctx)
		}
		if lf.replaced() {
			// The old file was read to its end above; the runtime
			// writes only to the new one now.
			lf.close()
			if err := lf.open(); err != nil {
				return err
			}
		}
	}
}
