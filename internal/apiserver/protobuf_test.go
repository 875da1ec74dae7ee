package apiserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	restclientwatch "k8s.io/client-go/rest/watch"
)

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: "7", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
	}
}

// clientDecoder is the decoder client-go's typed clients use for a media
// type, or with meta its metadata client's.
func clientDecoder(t *testing.T, media string, meta bool) runtime.SerializerInfo {
	t.Helper()
	codecs := clientscheme.Codecs.WithoutConversion()
	if meta {
		codecs = metainternalversionscheme.Codecs.WithoutConversion()
	}
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), media)
	if !ok {
		t.Fatalf("client-go has no serializer for %s", media)
	}
	return info
}

func TestWriteObject(t *testing.T) {
	noKind := testPod("no-kind")
	noKind.TypeMeta = metav1.TypeMeta{}
	tests := []struct {
		name            string
		media           string
		obj             runtime.Object
		wantContentType string
		wantKind        string
	}{
		{name: "pod in protobuf", media: mediaProtobuf, obj: testPod("a"), wantContentType: mediaProtobuf, wantKind: "Pod"},
		{name: "pod in JSON", media: mediaJSON, obj: testPod("a"), wantContentType: mediaJSON, wantKind: "Pod"},
		{name: "status in protobuf", media: mediaProtobuf, obj: statusOf(notFoundPath("/x")), wantContentType: mediaProtobuf, wantKind: "Status"},
		{name: "pod without its kind in protobuf", media: mediaProtobuf, obj: noKind, wantContentType: mediaProtobuf, wantKind: "Pod"},
		{name: "metadata in protobuf", media: mediaProtobuf, obj: partialMetadata(testPod("a")), wantContentType: mediaProtobuf, wantKind: "PartialObjectMetadata"},
		// A Table has no protobuf encoding: the answer is JSON.
		{name: "table asked in protobuf", media: mediaProtobuf, obj: &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}}, wantContentType: mediaJSON, wantKind: "Table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.obj.DeepCopyObject()
			rec := httptest.NewRecorder()
			writeObject(rec, 200, tt.media, tt.obj)
			if ct := rec.Header().Get("Content-Type"); ct != tt.wantContentType {
				t.Fatalf("Content-Type = %q, want %q", ct, tt.wantContentType)
			}
			if !reflect.DeepEqual(before, tt.obj) {
				t.Fatalf("encoding changed the object")
			}
			if tt.wantKind == "Table" {
				var tab metav1.Table
				if err := json.Unmarshal(rec.Body.Bytes(), &tab); err != nil || tab.Kind != "Table" {
					t.Fatalf("decode table: %v (kind %q)", err, tab.Kind)
				}
				return
			}
			info := clientDecoder(t, tt.wantContentType, tt.wantKind == "PartialObjectMetadata")
			got, gvk, err := info.Serializer.Decode(rec.Body.Bytes(), nil, nil)
			if err != nil {
				t.Fatalf("client decode: %v", err)
			}
			if gvk.Kind != tt.wantKind {
				t.Fatalf("decoded kind %q, want %q", gvk.Kind, tt.wantKind)
			}
			if want, ok := tt.obj.(*corev1.Pod); ok {
				pod := got.(*corev1.Pod)
				if pod.Name != want.Name || pod.Spec.NodeName != "n1" || pod.Labels["app"] != "web" || pod.ResourceVersion != "7" {
					t.Fatalf("decoded pod %+v", pod)
				}
			}
		})
	}
}

func TestProtobufWatchStream(t *testing.T) {
	pod := testPod("a")
	modified := testPod("a")
	modified.ResourceVersion = "8"
	bookmark := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	gone := statusOf(apierrors.NewResourceExpired("too old resource version: 1 (5)"))
	events := []struct {
		typ watch.EventType
		obj runtime.Object
	}{
		{watch.Added, pod},
		{watch.Modified, modified},
		{watch.Bookmark, bookmark},
		{watch.Deleted, modified},
		{watch.Error, gone},
	}
	cache := newEncodingCache(4)
	var stream, upstream bytes.Buffer
	info := clientDecoder(t, mediaProtobuf, false)
	// What upstream's API server writes for the same events: each object
	// in the envelope, inside a WatchEvent framed by length.
	upstreamEnc := streaming.NewEncoder(info.StreamSerializer.Framer.NewFrameWriter(&upstream), info.StreamSerializer.Serializer)
	var frame []byte
	for _, ev := range events {
		raw, err := cache.encode(ev.obj, mediaProtobuf)
		if err != nil {
			t.Fatal(err)
		}
		if frame, err = appendProtobufWatchEvent(frame[:0], string(ev.typ), raw); err != nil {
			t.Fatal(err)
		}
		stream.Write(frame)
		var obj bytes.Buffer
		if err := protoCodec.Encode(ev.obj, &obj); err != nil {
			t.Fatal(err)
		}
		if err := upstreamEnc.Encode(&metav1.WatchEvent{Type: string(ev.typ), Object: runtime.RawExtension{Raw: obj.Bytes()}}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(stream.Bytes(), upstream.Bytes()) {
		t.Fatalf("stream differs from the streaming encoder's:\n got %x\nwant %x", stream.Bytes(), upstream.Bytes())
	}

	// Decode as client-go's protobuf watch does.
	frames := info.StreamSerializer.Framer.NewFrameReader(io.NopCloser(&stream))
	dec := restclientwatch.NewDecoder(streaming.NewDecoder(frames, info.StreamSerializer.Serializer), info.Serializer)
	for i, want := range events {
		typ, obj, err := dec.Decode()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if typ != want.typ {
			t.Fatalf("event %d: type %s, want %s", i, typ, want.typ)
		}
		switch o := obj.(type) {
		case *corev1.Pod:
			w := want.obj.(*corev1.Pod)
			if o.Name != w.Name || o.ResourceVersion != w.ResourceVersion || !reflect.DeepEqual(o.Annotations, w.Annotations) {
				t.Fatalf("event %d: pod %s rv %s annotations %v, want %s rv %s", i, o.Name, o.ResourceVersion, o.Annotations, w.Name, w.ResourceVersion)
			}
		case *metav1.Status:
			if o.Code != 410 || o.Reason != metav1.StatusReasonExpired {
				t.Fatalf("event %d: status %d %s, want 410 Expired", i, o.Code, o.Reason)
			}
		default:
			t.Fatalf("event %d: decoded %T", i, obj)
		}
	}
	if _, _, err := dec.Decode(); err != io.EOF {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}

func TestEncodingCache(t *testing.T) {
	tests := []struct {
		name  string
		media string
		other string
	}{
		{name: "JSON", media: mediaJSON, other: mediaProtobuf},
		{name: "protobuf", media: mediaProtobuf, other: mediaJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEncodingCache(2)
			pod := testPod("a")
			first, err := c.encode(pod, tt.media)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := c.encode(pod, tt.media)
			if &first[0] != &again[0] {
				t.Fatal("second watcher of the object did not share its encoding")
			}
			want, _ := encodeAs(tt.media, pod)
			if !bytes.Equal(first, want) {
				t.Fatalf("cached encoding differs from a fresh one")
			}
			// The other media type is encoded only once somebody asks.
			e := c.entries[pod]
			other := &e.json
			if tt.other == mediaProtobuf {
				other = &e.protobuf
			}
			if other.raw != nil {
				t.Fatalf("%s encoded without anybody asking", tt.other)
			}
			if _, err := c.encode(pod, tt.other); err != nil || other.raw == nil {
				t.Fatalf("%s encoding: %v", tt.other, err)
			}
			// Eviction: two newer objects push the pod out.
			c.encode(testPod("b"), tt.media)
			c.encode(testPod("c"), tt.media)
			if _, ok := c.entries[pod]; ok {
				t.Fatal("oldest entry not evicted")
			}
		})
	}
}
