package integration

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/skiffhq/skiff/internal/testutil"
)

const (
	protobufMedia  = "application/vnd.kubernetes.protobuf"
	protobufStream = "application/vnd.kubernetes.protobuf;stream=watch"
)

// seenResponse is one response a client received.
type seenResponse struct {
	method, path, contentType string
	watch                     bool
	code                      int
}

// mediaRecorder remembers the media type of every response a client gets,
// so a test can tell the server really answered in protobuf (client-go
// decodes JSON as well, by the Content-Type).
type mediaRecorder struct {
	mu   sync.Mutex
	seen []seenResponse
}

type recordingTransport struct {
	rec  *mediaRecorder
	next http.RoundTripper
}

func (rt recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err == nil {
		rt.rec.mu.Lock()
		rt.rec.seen = append(rt.rec.seen, seenResponse{method: req.Method, path: req.URL.Path, watch: req.URL.Query().Get("watch") == "true",
			contentType: resp.Header.Get("Content-Type"), code: resp.StatusCode})
		rt.rec.mu.Unlock()
	}
	return resp, err
}

// last returns the latest response to method on a path ending in suffix.
func (m *mediaRecorder) last(t *testing.T, method, suffix string, watch bool) seenResponse {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.seen) - 1; i >= 0; i-- {
		s := m.seen[i]
		if s.method == method && strings.HasSuffix(s.path, suffix) && s.watch == watch {
			return s
		}
	}
	t.Fatalf("no %s response for …%s (watch=%v) among %+v", method, suffix, watch, m.seen)
	return seenResponse{}
}

// wantMedia fails unless the latest response to method on …suffix had
// the media type media.
func (m *mediaRecorder) wantMedia(t *testing.T, method, suffix string, watch bool, media string) {
	t.Helper()
	if got := m.last(t, method, suffix, watch); got.contentType != media {
		t.Errorf("%s …%s (watch=%v): Content-Type %q, want %q", method, suffix, watch, got.contentType, media)
	}
}

// protobufConfig returns cp's admin config set up as the in-process
// components are: protobuf first, JSON where there is none; responses
// are recorded in rec.
func protobufConfig(cp *testutil.ControlPlane, rec *mediaRecorder) *rest.Config {
	rc := rest.CopyConfig(cp.Config)
	rc.ContentType = protobufMedia
	rc.AcceptContentTypes = protobufMedia + ",application/json"
	rc.Wrap(func(next http.RoundTripper) http.RoundTripper { return recordingTransport{rec: rec, next: next} })
	return rc
}

func protobufClient(t *testing.T, cp *testutil.ControlPlane) (kubernetes.Interface, *mediaRecorder) {
	t.Helper()
	rec := &mediaRecorder{}
	c, err := kubernetes.NewForConfig(protobufConfig(cp, rec))
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func TestProtobufClient(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	// Subtests run one after the other inside this test: parallel ones
	// would wait for a free slot in the package's run while ctx ticks.
	ctx := testCtx(t)

	t.Run("create, get, update, patch, status, scale", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		pods := c.CoreV1().Pods(ns)
		created, err := pods.Create(ctx, makePod("p").Labels("app", "web").Obj(), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "POST", "/pods", false, protobufMedia)
		if created.UID == "" || created.Labels["app"] != "web" || created.Spec.Containers[0].Image != "nginx:1.27" {
			t.Fatalf("created %+v", created.ObjectMeta)
		}
		got, err := pods.Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "GET", "/pods/p", false, protobufMedia)
		if got.UID != created.UID || got.ResourceVersion != created.ResourceVersion || got.Spec.Containers[0].Name != "app" {
			t.Fatalf("got %+v, want the created pod", got.ObjectMeta)
		}

		got.Labels["tier"] = "front"
		updated, err := pods.Update(ctx, got, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "PUT", "/pods/p", false, protobufMedia)
		if updated.Labels["tier"] != "front" || updated.ResourceVersion == got.ResourceVersion {
			t.Fatalf("updated labels %v rv %s", updated.Labels, updated.ResourceVersion)
		}

		updated.Status.Conditions = []corev1.PodCondition{{Type: "Custom", Status: corev1.ConditionTrue}}
		st, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "PUT", "/pods/p/status", false, protobufMedia)
		if len(st.Status.Conditions) != 1 || st.Status.Conditions[0].Type != "Custom" {
			t.Fatalf("status conditions %+v", st.Status.Conditions)
		}

		patched, err := pods.Patch(ctx, "p", types.StrategicMergePatchType, []byte(`{"metadata":{"annotations":{"a":"b"}}}`), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "PATCH", "/pods/p", false, protobufMedia)
		if patched.Annotations["a"] != "b" || patched.Labels["tier"] != "front" {
			t.Fatalf("patched annotations %v labels %v", patched.Annotations, patched.Labels)
		}

		deps := c.AppsV1().Deployments(ns)
		if _, err := deps.Create(ctx, makeDeployment("d", 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sc, err := deps.UpdateScale(ctx, "d", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "PUT", "/deployments/d/scale", false, protobufMedia)
		if sc.Spec.Replicas != 3 {
			t.Fatalf("scale replicas %d, want 3", sc.Spec.Replicas)
		}
		if d, err := deps.Get(ctx, "d", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 3 {
			t.Fatalf("deployment after scale: %v", err)
		}

		if err := pods.Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "DELETE", "/pods/p", false, protobufMedia)
	})

	t.Run("list with paging", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		cms := c.CoreV1().ConfigMaps(ns)
		var want []string
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			want = append(want, name)
		}
		var names []string
		var pages []int
		opts := metav1.ListOptions{Limit: 2}
		for {
			l, err := cms.List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			rec.wantMedia(t, "GET", "/configmaps", false, protobufMedia)
			if l.ResourceVersion == "" {
				t.Fatal("list without a resourceVersion")
			}
			if len(pages) == 0 && (l.RemainingItemCount == nil || *l.RemainingItemCount != 3) {
				t.Errorf("first page remainingItemCount %v, want 3", l.RemainingItemCount)
			}
			for _, cm := range l.Items {
				if cm.Data["k"] != cm.Name {
					t.Errorf("configmap %s data %v", cm.Name, cm.Data)
				}
				names = append(names, cm.Name)
			}
			pages = append(pages, len(l.Items))
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
		if !slices.Equal(names, want) || !slices.Equal(pages, []int{2, 2, 1}) {
			t.Fatalf("pages %v of %v, want [2 2 1] of %v", pages, names, want)
		}
	})

	t.Run("watch: events, resume, bookmark", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		cms := c.CoreV1().ConfigMaps(ns)
		l, err := cms.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		rec.wantMedia(t, "GET", "/configmaps", true, protobufStream)
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["v"] = "2"
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, "w", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		type event struct {
			typ watch.EventType
			v   string
		}
		want := []event{{watch.Added, "1"}, {watch.Modified, "2"}, {watch.Deleted, "2"}}
		var addedRV string
		for i, wnt := range want {
			ev, ok := nextEvent(t, w, 30*time.Second)
			if !ok {
				t.Fatalf("watch closed after %d events", i)
			}
			got, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM || ev.Type != wnt.typ || got.Name != "w" || got.Data["v"] != wnt.v {
				t.Fatalf("event %d: %s %#v, want %s w v=%s", i, ev.Type, ev.Object, wnt.typ, wnt.v)
			}
			if i == 0 {
				addedRV = got.ResourceVersion
			}
		}

		// Resuming from the ADDED event's revision replays what followed it.
		w2 := watchConfigMaps(t, c, ns, metav1.ListOptions{ResourceVersion: addedRV})
		for i, wnt := range want[1:] {
			ev, ok := nextEvent(t, w2, 30*time.Second)
			if !ok {
				t.Fatalf("resumed watch closed after %d events", i)
			}
			if got, isCM := ev.Object.(*corev1.ConfigMap); !isCM || ev.Type != wnt.typ || got.Data["v"] != wnt.v {
				t.Fatalf("resumed event %d: %s %#v, want %s v=%s", i, ev.Type, ev.Object, wnt.typ, wnt.v)
			}
		}

		// A watch whose selector matches nothing still hears of progress.
		w3 := watchConfigMaps(t, c, ns, metav1.ListOptions{ResourceVersion: addedRV, AllowWatchBookmarks: true, LabelSelector: "never=matches"})
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unselected"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ev, ok := nextEvent(t, w3, 15*time.Second)
		if !ok || ev.Type != watch.Bookmark {
			t.Fatalf("got %s %#v, want BOOKMARK", ev.Type, ev.Object)
		}
		if bm, isCM := ev.Object.(*corev1.ConfigMap); !isCM || bm.ResourceVersion == "" {
			t.Fatalf("bookmark %#v", ev.Object)
		}
	})

	t.Run("initial events end with a bookmark", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		cms := c.CoreV1().ConfigMaps(ns)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "there"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{SendInitialEvents: ptr(true), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true})
		rec.wantMedia(t, "GET", "/configmaps", true, protobufStream)
		ev, ok := nextEvent(t, w, 30*time.Second)
		if cm, isCM := ev.Object.(*corev1.ConfigMap); !ok || ev.Type != watch.Added || !isCM || cm.Name != "there" {
			t.Fatalf("got %s %#v, want ADDED there", ev.Type, ev.Object)
		}
		ev, ok = nextEvent(t, w, 30*time.Second)
		bm, isCM := ev.Object.(*corev1.ConfigMap)
		if !ok || ev.Type != watch.Bookmark || !isCM || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
			t.Fatalf("got %s %#v, want the initial-events-end BOOKMARK", ev.Type, ev.Object)
		}
	})

	t.Run("errors are Status", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		_, err := c.CoreV1().Pods(ns).Get(ctx, "missing", metav1.GetOptions{})
		st := wantStatusErr(t, err, http.StatusNotFound, metav1.StatusReasonNotFound)
		rec.wantMedia(t, "GET", "/pods/missing", false, protobufMedia)
		if st.Details == nil || st.Details.Name != "missing" || st.Details.Kind != "pods" || !strings.Contains(st.Message, `"missing" not found`) {
			t.Errorf("404 status %+v", st)
		}

		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}}, metav1.CreateOptions{})
		wantStatusErr(t, err, http.StatusConflict, metav1.StatusReasonAlreadyExists)
		rec.wantMedia(t, "POST", "/configmaps", false, protobufMedia)

		bad := makePod("bad").Obj()
		bad.Spec.Containers = nil
		_, err = c.CoreV1().Pods(ns).Create(ctx, bad, metav1.CreateOptions{})
		st = wantStatusErr(t, err, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid)
		if !apierrors.IsInvalid(err) || st.Details == nil || len(st.Details.Causes) == 0 {
			t.Errorf("422 status without causes: %+v", st)
		}
		rec.wantMedia(t, "POST", "/pods", false, protobufMedia)

		_, err = c.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: "not-a-number"})
		wantStatusErr(t, err, http.StatusBadRequest, metav1.StatusReasonBadRequest)
		rec.wantMedia(t, "GET", "/configmaps", true, protobufMedia)
	})

	t.Run("tables stay JSON", func(t *testing.T) {
		c, rec := protobufClient(t, cp)
		ns := newNamespace(t, c)
		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "row"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, accept := range []string{
			// kubectl get's
			"application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
			// a Table has no protobuf form: the JSON one is next
			"application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
		} {
			raw, err := c.CoreV1().RESTClient().Get().Namespace(ns).Resource("configmaps").SetHeader("Accept", accept).DoRaw(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rec.wantMedia(t, "GET", "/configmaps", false, "application/json")
			var tab metav1.Table
			if err := json.Unmarshal(raw, &tab); err != nil {
				t.Fatal(err)
			}
			if tab.Kind != "Table" || len(tab.Rows) != 1 || tab.Rows[0].Cells[0] != "row" {
				t.Errorf("Accept %s: table kind %q rows %+v", accept, tab.Kind, tab.Rows)
			}
		}
	})

	t.Run("metadata client in protobuf", func(t *testing.T) {
		c, _ := protobufClient(t, cp)
		ns := newNamespace(t, c)
		rec := &mediaRecorder{}
		mc, err := metadata.NewForConfig(protobufConfig(cp, rec))
		if err != nil {
			t.Fatal(err)
		}
		gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"x": "y"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		l, err := mc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "GET", "/configmaps", false, protobufMedia)
		if len(l.Items) != 1 || l.Items[0].Name != "m" || l.Items[0].Labels["x"] != "y" {
			t.Fatalf("metadata list %+v", l.Items)
		}
		w, err := mc.Resource(gvr).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		rec.wantMedia(t, "GET", "/configmaps", true, protobufStream)
		if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "m", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ev, ok := nextEvent(t, w, 30*time.Second)
		if pm, isPM := ev.Object.(*metav1.PartialObjectMetadata); !ok || ev.Type != watch.Deleted || !isPM || pm.Name != "m" {
			t.Fatalf("got %s %#v, want DELETED m metadata", ev.Type, ev.Object)
		}
	})

	t.Run("dynamic client stays JSON", func(t *testing.T) {
		c, _ := protobufClient(t, cp)
		ns := newNamespace(t, c)
		rec := &mediaRecorder{}
		dc, err := dynamic.NewForConfig(protobufConfig(cp, rec))
		if err != nil {
			t.Fatal(err)
		}
		d := makeDeployment("dyn", 1)
		d.TypeMeta = metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
		if err != nil {
			t.Fatal(err)
		}
		gvr := appsv1.SchemeGroupVersion.WithResource("deployments")
		u, err := dc.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec.wantMedia(t, "POST", "/deployments", false, "application/json")
		if u.GetName() != "dyn" || u.GetKind() != "Deployment" {
			t.Fatalf("dynamic create %s %s", u.GetKind(), u.GetName())
		}
	})
}
