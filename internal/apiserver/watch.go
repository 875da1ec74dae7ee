package apiserver

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffhq/skiff/internal/storage"
)

// minWatchTimeout is upstream's --min-request-timeout: a watch without
// timeoutSeconds ends after a random time between it and twice it, so that
// clients spread their re-lists.
const minWatchTimeout = 30 * time.Minute

func (s *Server) watch(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if info.subresource != "" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "watch")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	q := r.URL.Query()
	pred, err := s.predicate(r, info.res, info.name)
	if err != nil {
		return err
	}
	timeout := minWatchTimeout + time.Duration(rand.Int64N(int64(minWatchTimeout)))
	if t := q.Get("timeoutSeconds"); t != "" {
		secs, err := strconv.ParseInt(t, 10, 64)
		if err != nil || secs < 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid timeoutSeconds %q", t))
		}
		timeout = time.Duration(secs) * time.Second
	}
	rv := q.Get("resourceVersion")
	if rv != "" && rv != "0" {
		if _, err := strconv.ParseUint(rv, 10, 64); err != nil {
			return apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
		}
	}
	opts := storage.WatchOptions{
		ResourceVersion:   rv,
		Predicate:         pred,
		ProgressNotify:    isTrue(q.Get("allowWatchBookmarks")),
		SendInitialEvents: isTrue(q.Get("sendInitialEvents")),
	}
	if opts.SendInitialEvents && q.Get("resourceVersionMatch") != "NotOlderThan" {
		return apierrors.NewBadRequest("sendInitialEvents requires resourceVersionMatch=NotOlderThan")
	}
	ctx := r.Context()
	wi, err := s.store(info.res).Watch(ctx, key(info.res, info.namespace, ""), opts)
	if err != nil {
		return storageError(err, info.res.Resource().GroupResource(), "")
	}
	defer wi.Stop()
	done := s.cfg.Metrics.watchStarted(info)
	defer done()

	// Watch streams are JSON lines, or protobuf frames (upstream's
	// ";stream=watch"), whatever else the client accepts.
	media, contentType := mediaJSON, mediaJSON
	if out.media == mediaProtobuf {
		media, contentType = mediaProtobuf, mediaProtobuf+";stream=watch"
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var frame []byte
	first := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return nil
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return nil
			}
			obj := ev.Object
			// shared: obj is the watch cache's own object in the plain form,
			// whose encoding every other watcher of the change can reuse.
			shared := false
			if ev.Type != watch.Error && ev.Type != watch.Bookmark && obj != nil {
				obj = withKind(obj, info.res.Kind)
				shared = obj == ev.Object
				switch out.as {
				case "Table":
					t, err := toTable(info.res, []runtime.Object{obj}, includeObject(r), first)
					if err != nil {
						return nil
					}
					first = false
					obj = t
					shared = false
				case "PartialObjectMetadata", "PartialObjectMetadataList":
					obj = partialMetadata(obj)
					shared = false
				}
			} else if ev.Type == watch.Bookmark && obj != nil {
				obj = withKind(obj, info.res.Kind)
				if out.as == "PartialObjectMetadata" || out.as == "PartialObjectMetadataList" {
					// A metadata informer decodes bookmarks with the meta
					// scheme only; a full kind there fails its watch.
					obj = partialMetadata(obj)
				}
			} else if st, isStatus := obj.(*metav1.Status); ev.Type == watch.Error && isStatus {
				// client-go cannot decode an ERROR event (such as 410 Gone)
				// whose Status lacks its kind, and reports a 500 instead.
				c := *st
				c.Kind, c.APIVersion = "Status", "v1"
				obj = &c
			}
			var raw []byte
			if shared {
				raw, err = s.encodings.encode(obj, media)
			} else {
				raw, err = encodeAs(media, obj)
			}
			if err != nil {
				return nil
			}
			if media == mediaProtobuf {
				if frame, err = appendProtobufWatchEvent(frame[:0], string(ev.Type), raw); err != nil {
					return nil
				}
			} else {
				frame = appendWatchEvent(frame[:0], string(ev.Type), raw)
			}
			if _, err := w.Write(frame); err != nil {
				return nil
			}
			if flusher != nil && len(wi.ResultChan()) == 0 {
				flusher.Flush()
			}
		}
	}
}
