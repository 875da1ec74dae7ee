package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	ts := time.Date(2016, 10, 6, 0, 17, 9, 669794202, time.UTC)
	tests := []struct {
		name    string
		line    string
		want    logRecord
		wantErr bool
	}{
		{name: "full line", line: "2016-10-06T00:17:09.669794202Z stdout F hello world",
			want: logRecord{time: ts, stream: "stdout", content: []byte("hello world")}},
		{name: "partial stderr", line: "2016-10-06T00:17:09.669794202Z stderr P part",
			want: logRecord{time: ts, stream: "stderr", partial: true, content: []byte("part")}},
		{name: "content keeps spaces", line: "2016-10-06T00:17:09.669794202Z stdout F  two  spaces ",
			want: logRecord{time: ts, stream: "stdout", content: []byte(" two  spaces ")}},
		{name: "empty content with space", line: "2016-10-06T00:17:09.669794202Z stdout F ",
			want: logRecord{time: ts, stream: "stdout", content: []byte{}}},
		{name: "empty content without space", line: "2016-10-06T00:17:09.669794202Z stdout F",
			want: logRecord{time: ts, stream: "stdout"}},
		{name: "extra tags", line: "2016-10-06T00:17:09.669794202Z stdout P:x:y frag",
			want: logRecord{time: ts, stream: "stdout", partial: true, content: []byte("frag")}},
		{name: "offset timestamp", line: "2016-10-06T02:17:09.669794202+02:00 stdout F x",
			want: logRecord{time: ts, stream: "stdout", content: []byte("x")}},
		{name: "bad timestamp", line: "yesterday stdout F x", wantErr: true},
		{name: "bad stream", line: "2016-10-06T00:17:09Z stdin F x", wantErr: true},
		{name: "bad tag", line: "2016-10-06T00:17:09Z stdout X x", wantErr: true},
		{name: "no stream", line: "2016-10-06T00:17:09Z", wantErr: true},
		{name: "no tag", line: "2016-10-06T00:17:09Z stdout", wantErr: true},
		{name: "empty", line: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRecord([]byte(tt.line))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseRecord(%q) = %+v, want error", tt.line, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.time.Equal(tt.want.time) || got.stream != tt.want.stream || got.partial != tt.want.partial || !bytes.Equal(got.content, tt.want.content) {
				t.Errorf("parseRecord(%q) = %+v, want %+v", tt.line, got, tt.want)
			}
		})
	}
}

func TestParseLogOptions(t *testing.T) {
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		query    string
		want     logOptions
		previous bool
		wantErr  string
	}{
		{name: "defaults", query: "", want: logOptions{tailLines: -1}},
		{name: "everything", query: "follow=true&timestamps=1&previous=true&tailLines=5&limitBytes=100&sinceSeconds=60&stream=Stderr",
			want: logOptions{follow: true, timestamps: true, tailLines: 5, limitBytes: 100, since: now.Add(-time.Minute), stream: "stderr"}, previous: true},
		{name: "since time", query: "sinceTime=2024-01-01T11:00:00Z&stream=Stdout",
			want: logOptions{tailLines: -1, since: now.Add(-time.Hour), stream: "stdout"}},
		{name: "tail zero", query: "tailLines=0", want: logOptions{tailLines: 0}},
		{name: "stream all", query: "stream=All", want: logOptions{tailLines: -1}},
		{name: "bad follow", query: "follow=yes", wantErr: "invalid follow"},
		{name: "negative tail", query: "tailLines=-1", wantErr: "invalid tailLines"},
		{name: "zero limit", query: "limitBytes=0", wantErr: "invalid limitBytes"},
		{name: "zero since", query: "sinceSeconds=0", wantErr: "invalid sinceSeconds"},
		{name: "bad since time", query: "sinceTime=noon", wantErr: "invalid sinceTime"},
		{name: "both since", query: "sinceSeconds=5&sinceTime=2024-01-01T11:00:00Z", wantErr: "at most one of"},
		{name: "bad stream", query: "stream=stdout", wantErr: "invalid stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, previous, err := parseLogOptions(q, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || previous != tt.previous {
				t.Errorf("got %+v previous=%v, want %+v previous=%v", got, previous, tt.want, tt.previous)
			}
		})
	}
}

// logFixture is a CRI log: two stdout lines, one split in fragments, a
// stderr line interleaved with the fragments, a corrupt line, and a last
// line still being written (a prompt without a newline).
const logFixture = `2024-01-01T10:00:00.000000001Z stdout F first
2024-01-01T10:00:01Z stdout P sec
2024-01-01T10:00:01.5Z stderr F oops
not a log line
2024-01-01T10:00:02Z stdout P ond
2024-01-01T10:00:03Z stdout F  line
2024-01-01T10:00:04Z stdout F third
2024-01-01T10:00:05Z stdout P prompt> 
`

func TestCopyLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(logFixture), 0o600); err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name string
		opts logOptions
		want string
	}{
		{name: "all", opts: logOptions{tailLines: -1},
			want: "first\noops\nsecond line\nthird\nprompt> "},
		{name: "timestamps", opts: logOptions{tailLines: -1, timestamps: true},
			want: "2024-01-01T10:00:00.000000001Z first\n2024-01-01T10:00:01.5Z oops\n2024-01-01T10:00:01Z second line\n2024-01-01T10:00:04Z third\n2024-01-01T10:00:05Z prompt> "},
		{name: "tail counts joined lines", opts: logOptions{tailLines: 3},
			want: "second line\nthird\nprompt> "},
		{name: "tail more than there is", opts: logOptions{tailLines: 100},
			want: "first\noops\nsecond line\nthird\nprompt> "},
		{name: "tail zero", opts: logOptions{tailLines: 0}, want: ""},
		{name: "since drops older lines", opts: logOptions{tailLines: -1, since: at("2024-01-01T10:00:01.2Z")},
			want: "oops\nthird\nprompt> "},
		{name: "since and tail", opts: logOptions{tailLines: 1, since: at("2024-01-01T10:00:01Z")},
			want: "prompt> "},
		{name: "stdout only", opts: logOptions{tailLines: -1, stream: "stdout"},
			want: "first\nsecond line\nthird\nprompt> "},
		{name: "stderr only", opts: logOptions{tailLines: -1, stream: "stderr"}, want: "oops\n"},
		{name: "limit bytes cuts mid line", opts: logOptions{tailLines: -1, limitBytes: 8}, want: "first\noo"},
		{name: "limit bytes with tail", opts: logOptions{tailLines: 2, limitBytes: 7}, want: "third\np"},
		{name: "limit larger than log", opts: logOptions{tailLines: -1, limitBytes: 1000},
			want: "first\noops\nsecond line\nthird\nprompt> "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			running := func(context.Context) bool {
				t.Fatal("a log that is not followed asked for the container's state")
				return false
			}
			if err := copyLog(context.Background(), &out, func() {}, path, tt.opts, running, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got %q\nwant %q", out.String(), tt.want)
			}
		})
	}
	t.Run("missing file is empty", func(t *testing.T) {
		var out bytes.Buffer
		err := copyLog(context.Background(), &out, func() {}, filepath.Join(t.TempDir(), "none.log"), logOptions{tailLines: -1}, nil, slog.New(slog.DiscardHandler))
		if err != nil || out.Len() != 0 {
			t.Fatalf("got %q, %v; want nothing", out.String(), err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe to read while a follower writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the buffer holds want.
func waitFor(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", b.String(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, s); err != nil {
		t.Fatal(err)
	}
}

func TestCopyLogFollow(t *testing.T) {
	tests := []struct {
		name string
		opts logOptions
		// steps: text appended to the file, then the output expected.
		steps [][2]string
		// final is the output once the container wrote "bye" and stopped.
		final string
	}{
		{name: "new lines and fragments", opts: logOptions{follow: true, tailLines: -1},
			steps: [][2]string{
				{"2024-01-01T10:00:00Z stdout F one\n", "one\n"},
				{"2024-01-01T10:00:01Z stdout P tw\n", "one\ntw"},
				{"2024-01-01T10:00:02Z stdout F o\n2024-01-01T10:00:03Z stdout F thr", "one\ntwo\n"},
				{"ee\n", "one\ntwo\nthree\n"},
			},
			final: "one\ntwo\nthree\nbye\n"},
		{name: "timestamps once per line", opts: logOptions{follow: true, tailLines: -1, timestamps: true},
			steps: [][2]string{
				{"2024-01-01T10:00:01Z stdout P tw\n", "2024-01-01T10:00:01Z tw"},
				{"2024-01-01T10:00:02Z stdout F o\n", "2024-01-01T10:00:01Z two\n"},
			},
			final: "2024-01-01T10:00:01Z two\n2024-01-01T11:00:00Z bye\n"},
		{name: "tail then follow", opts: logOptions{follow: true, tailLines: 1},
			steps: [][2]string{
				{"2024-01-01T10:00:00Z stdout F a\n2024-01-01T10:00:00Z stdout F b\n", "b\n"},
				{"2024-01-01T10:00:01Z stdout F c\n", "b\nc\n"},
			},
			final: "b\nc\nbye\n"},
		{name: "tail zero shows only new lines", opts: logOptions{follow: true, tailLines: 0},
			steps: [][2]string{
				{"2024-01-01T10:00:00Z stdout F old\n", ""},
				{"2024-01-01T10:00:01Z stdout F new\n", "new\n"},
			},
			final: "new\nbye\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each waits a status interval for the container to stop
			path := filepath.Join(t.TempDir(), "0.log")
			appendFile(t, path, tt.steps[0][0])
			var alive atomic.Bool
			alive.Store(true)
			var out syncBuffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			// The first flush ends the first pass: what is appended
			// after it is new to the follower.
			firstPass := make(chan struct{})
			var once sync.Once
			flush := func() { once.Do(func() { close(firstPass) }) }
			go func() {
				done <- copyLog(ctx, &out, flush, path, tt.opts, func(context.Context) bool { return alive.Load() }, slog.New(slog.DiscardHandler))
			}()
			<-firstPass
			waitFor(t, &out, tt.steps[0][1])
			for _, step := range tt.steps[1:] {
				appendFile(t, path, step[0])
				waitFor(t, &out, step[1])
			}
			// The container stops: what it wrote last still comes out,
			// then the copy ends by itself.
			appendFile(t, path, "2024-01-01T11:00:00Z stdout F bye\n")
			alive.Store(false)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("follow did not end after the container stopped")
			}
			if out.String() != tt.final {
				t.Errorf("final output %q, want %q", out.String(), tt.final)
			}
		})
	}
}

func TestCopyLogFollowEnds(t *testing.T) {
	t.Run("client goes away", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "0.log")
		appendFile(t, path, "2024-01-01T10:00:00Z stdout F x\n")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var out syncBuffer
		go func() {
			done <- copyLog(ctx, &out, func() {}, path, logOptions{follow: true, tailLines: -1}, func(context.Context) bool { return true }, slog.New(slog.DiscardHandler))
		}()
		waitFor(t, &out, "x\n")
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not end with its context")
		}
	})
	t.Run("file appears later", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "0.log")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out syncBuffer
		go func() {
			_ = copyLog(ctx, &out, func() {}, path, logOptions{follow: true, tailLines: -1}, func(context.Context) bool { return true }, slog.New(slog.DiscardHandler))
		}()
		appendFile(t, path, "2024-01-01T10:00:00Z stdout F late\n")
		waitFor(t, &out, "late\n")
	})
	t.Run("rotation", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "0.log")
		appendFile(t, path, "2024-01-01T10:00:00Z stdout F before\n")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out syncBuffer
		go func() {
			_ = copyLog(ctx, &out, func() {}, path, logOptions{follow: true, tailLines: -1}, func(context.Context) bool { return true }, slog.New(slog.DiscardHandler))
		}()
		waitFor(t, &out, "before\n")
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		appendFile(t, path, "2024-01-01T10:00:01Z stdout F after\n")
		waitFor(t, &out, "before\nafter\n")
	})
	t.Run("limit ends follow", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "0.log")
		appendFile(t, path, "2024-01-01T10:00:00Z stdout F abc\n")
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- copyLog(context.Background(), &out, func() {}, path, logOptions{follow: true, tailLines: -1, limitBytes: 6}, func(context.Context) bool { return true }, slog.New(slog.DiscardHandler))
		}()
		appendFile(t, path, "2024-01-01T10:00:01Z stdout F defgh\n")
		select {
		case err := <-done:
			if err != nil || out.String() != "abc\nde" {
				t.Fatalf("got %q, %v; want %q", out.String(), err, "abc\nde")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not end at the byte limit")
		}
	})
}
