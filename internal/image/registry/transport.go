package registry

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// handlerTransport is an http.RoundTripper that answers by calling a
// handler in the same goroutine: go-containerregistry's client speaks the
// registry protocol to our own registry without a socket.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		// A RoundTripper owns the body, read or not.
		defer req.Body.Close()
	}
	in := req.Clone(req.Context())
	if in.Body == nil {
		in.Body = http.NoBody
	}
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "in-process"
	rec := newRecorder()
	t.h.ServeHTTP(rec, in)
	return rec.response(req), nil
}

// recorder is a buffering http.ResponseWriter. Registry responses on the
// push path are small (blobs only travel up), so buffering is harmless.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

func (r *recorder) response(req *http.Request) *http.Response {
	r.WriteHeader(http.StatusOK)
	length := int64(r.body.Len())
	if req.Method == http.MethodHead {
		// A HEAD answer describes the body a GET would get.
		length = -1
		if n, err := strconv.ParseInt(r.header.Get("Content-Length"), 10, 64); err == nil {
			length = n
		}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.header,
		Body:          io.NopCloser(&r.body),
		ContentLength: length,
		Request:       req,
	}
}
