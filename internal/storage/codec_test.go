package storage

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func codecPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u1", ResourceVersion: "42",
			Labels: map[string]string{"app": "web", "tier": "front"}, CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{
			Name: "c", Image: "busybox", Command: []string{"sh", "-c", "sleep 1"},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.42.0.5"},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	typed := codecPod()
	typed.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Thing",
		"metadata": map[string]any{"name": "t", "resourceVersion": "9"},
		"spec":     map[string]any{"replicas": int64(3)},
	}}
	tests := []struct {
		name      string
		obj       runtime.Object
		into      func() runtime.Object
		wantProto bool
	}{
		{name: "pod without type meta", obj: codecPod(), into: func() runtime.Object { return &corev1.Pod{} }, wantProto: true},
		{name: "pod with type meta", obj: typed, into: func() runtime.Object { return &corev1.Pod{} }, wantProto: true},
		{name: "configmap", obj: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"},
			BinaryData: map[string][]byte{"b": {0, 1, 2}}}, into: func() runtime.Object { return &corev1.ConfigMap{} }, wantProto: true},
		{name: "unstructured is JSON", obj: u, into: func() runtime.Object { return &unstructured.Unstructured{} }},
	}
	var c Codec
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc, _ := metaAccessor(tt.obj)
			rv := acc.GetResourceVersion()
			data, err := c.Encode(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.HasPrefix(data, protobufPrefix); got != tt.wantProto {
				t.Fatalf("stored as protobuf = %v, want %v: %q", got, tt.wantProto, data)
			}
			again, _ := c.Encode(tt.obj)
			if !bytes.Equal(data, again) {
				t.Errorf("encoding is not deterministic")
			}
			out := tt.into()
			if err := c.Decode(data, 77, out); err != nil {
				t.Fatal(err)
			}
			want := tt.obj.DeepCopyObject()
			wantAcc, _ := metaAccessor(want)
			wantAcc.SetResourceVersion("77")
			if !equality.Semantic.DeepEqual(want, out) {
				t.Errorf("round trip:\n got %#v\nwant %#v", out, want)
			}
			if got := acc.GetResourceVersion(); got != rv {
				t.Errorf("Encode changed the caller's resourceVersion from %q to %q", rv, got)
			}
		})
	}
}

// TestCodecReadsJSON: values written as JSON before protobuf storage stay
// readable.
func TestCodecReadsJSON(t *testing.T) {
	p := codecPod()
	p.ResourceVersion = ""
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var out corev1.Pod
	if err := (Codec{}).Decode(data, 5, &out); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion = "5"
	if !equality.Semantic.DeepEqual(p, &out) {
		t.Errorf("got %#v\nwant %#v", &out, p)
	}
}

func TestCodecProtobufIntoJSONOnlyType(t *testing.T) {
	data, err := (Codec{}).Encode(codecPod())
	if err != nil {
		t.Fatal(err)
	}
	if err := (Codec{}).Decode(data, 1, &unstructured.Unstructured{}); err == nil {
		t.Fatal("decoding protobuf into a type without protobuf code succeeded")
	}
}

// BenchmarkCodecDecode compares reading a pod stored as protobuf with one
// stored as JSON.
func BenchmarkCodecDecode(b *testing.B) {
	pod := codecPod()
	pb, _ := (Codec{}).Encode(pod)
	js, _ := json.Marshal(pod)
	for _, bc := range []struct {
		name string
		data []byte
	}{{"protobuf", pb}, {"json", js}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out corev1.Pod
				if err := (Codec{}).Decode(bc.data, 1, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func metaAccessor(obj runtime.Object) (metav1.Object, error) { return meta.Accessor(obj) }
