package integration

import (
	"fmt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/testutil"
)

func TestClientGoDynamicAndInformer(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	ctx := testCtx(t)
	ns := newNamespace(t, cp.Client)

	t.Run("dynamic client", func(t *testing.T) {
		dc, err := dynamic.NewForConfig(cp.Config)
		if err != nil {
			t.Fatal(err)
		}
		gvr := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "dyn"},
			"spec": map[string]any{
				"selector": map[string]any{"matchLabels": map[string]any{"app": "dyn"}},
				"template": map[string]any{
					"metadata": map[string]any{"labels": map[string]any{"app": "dyn"}},
					"spec":     map[string]any{"containers": []any{map[string]any{"name": "c", "image": "nginx"}}},
				},
			},
		}}
		created, err := dc.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(created.Object, "spec", "replicas"); r != 1 {
			t.Errorf("defaulted replicas = %d, want 1", r)
		}
		if created.GetGeneration() != 1 || created.GetUID() == "" {
			t.Errorf("generation=%d uid=%q", created.GetGeneration(), created.GetUID())
		}
		_ = unstructured.SetNestedField(created.Object, int64(3), "spec", "replicas")
		updated, err := dc.Resource(gvr).Namespace(ns).Update(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(updated.Object, "spec", "replicas"); r != 3 || updated.GetGeneration() != 2 {
			t.Errorf("after update replicas=%d generation=%d", r, updated.GetGeneration())
		}
		l, err := dc.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].GetName() != "dyn" || l.GetKind() != "DeploymentList" {
			t.Errorf("list kind=%q items=%d", l.GetKind(), len(l.Items))
		}
		if err := dc.Resource(gvr).Namespace(ns).Delete(ctx, "dyn", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = dc.Resource(gvr).Namespace(ns).Get(ctx, "dyn", metav1.GetOptions{})
		wantStatusErr(t, err, 404, metav1.StatusReasonNotFound)
	})

	t.Run("informer sees add, update, delete", func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		record := func(s string) {
			mu.Lock()
			seen = append(seen, s)
			mu.Unlock()
		}
		f := informers.NewSharedInformerFactoryWithOptions(cp.Client, 0, informers.WithNamespace(ns))
		inf := f.Core().V1().ConfigMaps().Informer()
		_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { record("add " + obj.(*corev1.ConfigMap).Name) },
			UpdateFunc: func(old, obj any) {
				record("update " + obj.(*corev1.ConfigMap).Name + " " + obj.(*corev1.ConfigMap).Data["v"])
			},
			DeleteFunc: func(obj any) {
				if cm, ok := obj.(*corev1.ConfigMap); ok {
					record("delete " + cm.Name)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		// Shutdown waits for the informers, which stop when stop closes.
		defer f.Shutdown()
		defer close(stop)
		f.Start(stop)
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			t.Fatal("informer did not sync")
		}
		cms := cp.Client.CoreV1().ConfigMaps(ns)
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inf"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["v"] = "2"
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, "inf", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []string{"add inf", "update inf 2", "delete inf"}
		testutil.Eventually(t, 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) >= len(want)
		}, "informer events")
		mu.Lock()
		defer mu.Unlock()
		// Other configmaps in the namespace (none) would show up too.
		if !slices.Equal(seen, want) {
			t.Errorf("informer saw %v, want %v", seen, want)
		}
	})
}

func TestClientGoListSelectors(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)
	other := newNamespace(t, c)

	for _, p := range []*corev1.Pod{
		makePod("web-1").Labels("app", "web", "env", "prod").Node("n1").Obj(),
		makePod("web-2").Labels("app", "web", "env", "dev").Node("n2").Obj(),
		makePod("db-1").Labels("app", "db", "env", "prod").Obj(),
		makePod("bare").Obj(),
	} {
		if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CoreV1().Pods(other).Create(ctx, makePod("web-1").Labels("app", "web").Obj(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// One pod runs, so status.phase has two values to tell apart.
	p, _ := c.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
	p.Status.Phase = corev1.PodRunning
	if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range []*corev1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "ev1"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: ns}, Reason: "Started", Type: "Normal"},
		{ObjectMeta: metav1.ObjectMeta{Name: "ev2"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "db-1", Namespace: ns}, Reason: "Started", Type: "Normal"},
	} {
		if _, err := c.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name      string
		allNS     bool
		label     string
		field     string
		wantNames []string // namespace/name
	}{
		{name: "label equality", label: "app=web", wantNames: []string{ns + "/web-1", ns + "/web-2"}},
		{name: "label inequality", label: "app!=web", wantNames: []string{ns + "/bare", ns + "/db-1"}},
		{name: "label set in", label: "env in (prod),app", wantNames: []string{ns + "/db-1", ns + "/web-1"}},
		{name: "label set notin", label: "env notin (prod)", wantNames: []string{ns + "/bare", ns + "/web-2"}},
		{name: "label exists", label: "!app", wantNames: []string{ns + "/bare"}},
		{name: "metadata.name", field: "metadata.name=web-2", wantNames: []string{ns + "/web-2"}},
		{name: "metadata.namespace across namespaces", allNS: true, field: "metadata.namespace=" + other, wantNames: []string{other + "/web-1"}},
		{name: "name across namespaces", allNS: true, field: "metadata.name=web-1", wantNames: []string{ns + "/web-1", other + "/web-1"}},
		{name: "spec.nodeName", field: "spec.nodeName=n2", wantNames: []string{ns + "/web-2"}},
		{name: "unscheduled", field: "spec.nodeName=", wantNames: []string{ns + "/bare", ns + "/db-1"}},
		{name: "status.phase", field: "status.phase=Running", wantNames: []string{ns + "/web-1"}},
		{name: "status.phase not", field: "status.phase!=Running", wantNames: []string{ns + "/bare", ns + "/db-1", ns + "/web-2"}},
		{name: "label and field", label: "env=prod", field: "status.phase=Pending", wantNames: []string{ns + "/db-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			namespace := ns
			if tc.allNS {
				namespace = ""
			}
			l, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: tc.label, FieldSelector: tc.field})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range l.Items {
				if tc.allNS && p.Namespace != ns && p.Namespace != other {
					continue
				}
				got = append(got, p.Namespace+"/"+p.Name)
			}
			slices.Sort(got)
			want := slices.Clone(tc.wantNames)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}

	t.Run("events by involvedObject.name", func(t *testing.T) {
		t.Parallel()
		l, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=db-1"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].Name != "ev2" {
			t.Errorf("got %d events, want ev2", len(l.Items))
		}
	})

	t.Run("unsupported field is 400", func(t *testing.T) {
		t.Parallel()
		for _, fs := range []string{"spec.containers.image=nginx", "metadata.labels=x"} {
			_, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: fs})
			st := wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
			if want := "field label not supported"; !contains(st.Message, want) {
				t.Errorf("%s: message %q, want %q", fs, st.Message, want)
			}
		}
		_, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
	})

	t.Run("malformed label selector is 400", func(t *testing.T) {
		t.Parallel()
		_, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app in (web"})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
	})
}

func TestClientGoListPagingAndResourceVersion(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)
	cms := c.CoreV1().ConfigMaps(ns)
	var all []string
	for i := range 25 {
		name := fmt.Sprintf("cm-%02d", i)
		all = append(all, name)
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("limit and continue", func(t *testing.T) {
		var got []string
		var sizes []int
		var remaining []int64
		opts := metav1.ListOptions{Limit: 10}
		listRV := ""
		for {
			l, err := cms.List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if listRV == "" {
				listRV = l.ResourceVersion
			} else if l.ResourceVersion != listRV {
				t.Errorf("page resourceVersion %s, want the first page's %s (one snapshot)", l.ResourceVersion, listRV)
			}
			sizes = append(sizes, len(l.Items))
			if l.RemainingItemCount != nil {
				remaining = append(remaining, *l.RemainingItemCount)
			}
			got = append(got, names(l.Items)...)
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
			if len(sizes) == 1 {
				// A write between pages must not show up in the snapshot.
				if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-zz-late"}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !slices.Equal(sizes, []int{10, 10, 5}) {
			t.Errorf("page sizes %v, want [10 10 5]", sizes)
		}
		if !slices.Equal(remaining, []int64{15, 5}) {
			t.Errorf("remainingItemCount %v, want [15 5]", remaining)
		}
		if !slices.Equal(got, all) {
			t.Errorf("paged names %v, want %v", got, all)
		}
	})

	t.Run("bad continue token is 400", func(t *testing.T) {
		_, err := cms.List(ctx, metav1.ListOptions{Limit: 10, Continue: "garbage"})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
	})

	t.Run("resourceVersion semantics", func(t *testing.T) {
		before, err := cms.Get(ctx, "cm-00", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l0, err := cms.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		oldRV := l0.ResourceVersion
		before.Data["v"] = "2"
		after, err := cms.Update(ctx, before, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		find := func(l *corev1.ConfigMapList) string {
			for _, cm := range l.Items {
				if cm.Name == "cm-00" {
					return cm.Data["v"]
				}
			}
			return "missing"
		}
		// Exact: the state at the old revision.
		l, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: oldRV, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
		if err != nil {
			t.Fatal(err)
		}
		if find(l) != "1" || l.ResourceVersion != oldRV {
			t.Errorf("exact list at %s: v=%s rv=%s, want v=1 rv=%s", oldRV, find(l), l.ResourceVersion, oldRV)
		}
		// NotOlderThan the update: sees it.
		l, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: after.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
		if err != nil {
			t.Fatal(err)
		}
		lrv, _ := strconv.ParseInt(l.ResourceVersion, 10, 64)
		arv, _ := strconv.ParseInt(after.ResourceVersion, 10, 64)
		if find(l) != "2" || lrv < arv {
			t.Errorf("notOlderThan %s: v=%s rv=%s", after.ResourceVersion, find(l), l.ResourceVersion)
		}
		// "0": any state, served from the watch cache; it becomes current.
		testutil.Eventually(t, 20*time.Second, func() bool {
			l, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err == nil && find(l) == "2" && len(l.Items) >= 25
		}, "list at resourceVersion 0 catches up with the update")
		// Exact at a compacted-away or future revision, and bad values.
		_, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: "0", ResourceVersionMatch: metav1.ResourceVersionMatchExact})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
		_, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: "abc"})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
		_, err = cms.List(ctx, metav1.ListOptions{ResourceVersionMatch: metav1.ResourceVersionMatchExact})
		wantStatusErr(t, err, 400, metav1.StatusReasonBadRequest)
	})
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// nextEvent waits for one watch event.
func nextEvent(t *testing.T, w watch.Interface, within time.Duration) (watch.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		return ev, ok
	case <-time.After(within):
		t.Fatalf("no watch event within %v", within)
		return watch.Event{}, false
	}
}

// watchConfigMaps starts a watch and stops it with the test.
func watchConfigMaps(t *testing.T, c kubernetes.Interface, ns string, opts metav1.ListOptions) watch.Interface {
	t.Helper()
	w, err := c.CoreV1().ConfigMaps(ns).Watch(testCtx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

func TestClientGoWatch(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)

	t.Run("from a resourceVersion in order", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		cms := c.CoreV1().ConfigMaps(ns)
		first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["v"] = "2"
		if _, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, "w", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Starting after "before" replays exactly what followed it.
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
		want := []struct {
			typ watch.EventType
			v   string
		}{{watch.Added, "1"}, {watch.Modified, "2"}, {watch.Deleted, "2"}}
		var lastRV int64
		for i, wnt := range want {
			ev, ok := nextEvent(t, w, 30*time.Second)
			if !ok {
				t.Fatalf("watch closed after %d events", i)
			}
			got, isCM := ev.Object.(*corev1.ConfigMap)
			if !isCM || ev.Type != wnt.typ || got.Name != "w" || got.Data["v"] != wnt.v {
				t.Fatalf("event %d: %s %#v, want %s w v=%s", i, ev.Type, ev.Object, wnt.typ, wnt.v)
			}
			rv, _ := strconv.ParseInt(got.ResourceVersion, 10, 64)
			if rv <= lastRV {
				t.Errorf("event %d resourceVersion %d not after %d", i, rv, lastRV)
			}
			lastRV = rv
		}
	})

	t.Run("bookmarks", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		l, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{ResourceVersion: l.ResourceVersion, AllowWatchBookmarks: true, LabelSelector: "never=matches"})
		other, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unselected"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ev, ok := nextEvent(t, w, 15*time.Second)
		if !ok || ev.Type != watch.Bookmark {
			t.Fatalf("got %s %#v, want BOOKMARK", ev.Type, ev.Object)
		}
		bm := ev.Object.(*corev1.ConfigMap)
		brv, _ := strconv.ParseInt(bm.ResourceVersion, 10, 64)
		orv, _ := strconv.ParseInt(other.ResourceVersion, 10, 64)
		if brv < orv {
			t.Errorf("bookmark resourceVersion %d older than the last write %d", brv, orv)
		}
	})

	t.Run("timeoutSeconds ends the watch", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		start := time.Now()
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{TimeoutSeconds: ptr(int64(1))})
		if ev, ok := nextEvent(t, w, 30*time.Second); ok {
			t.Fatalf("unexpected event %s", ev.Type)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("watch ended after %v, before its 1s timeout", d)
		}
	})

	t.Run("label selector: objects leaving the selection are DELETED", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		w := watchConfigMaps(t, c, ns, metav1.ListOptions{LabelSelector: "keep=yes"})
		cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "sel", Labels: map[string]string{"keep": "yes"}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Labels["keep"] = "no"
		if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []watch.EventType{watch.Added, watch.Deleted} {
			ev, ok := nextEvent(t, w, 30*time.Second)
			if !ok || ev.Type != want {
				t.Fatalf("got %s, want %s", ev.Type, want)
			}
		}
	})
}

func TestClientGoWatchAcrossRestart(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	ctx := testCtx(t)
	ns := newNamespace(t, cp.Client)
	cms := cp.Client.CoreV1().ConfigMaps(ns)

	w := watchConfigMaps(t, cp.Client, ns, metav1.ListOptions{})
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, ok := nextEvent(t, w, 30*time.Second)
	if !ok || ev.Type != watch.Added {
		t.Fatalf("got %s, want ADDED", ev.Type)
	}
	lastRV := ev.Object.(*corev1.ConfigMap).ResourceVersion

	cp.Restart()
	cms = cp.Client.CoreV1().ConfigMaps(ns)
	// The old watch ends with the old server.
	for ok := true; ok; {
		_, ok = nextEvent(t, w, 30*time.Second)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w2 := watchConfigMaps(t, cp.Client, ns, metav1.ListOptions{ResourceVersion: lastRV})
	var got []string
	for range 2 {
		ev, ok := nextEvent(t, w2, 30*time.Second)
		if !ok {
			t.Fatalf("resumed watch closed after %v", got)
		}
		if st, isStatus := ev.Object.(*metav1.Status); isStatus {
			t.Fatalf("resumed watch from %s: %s %d %s: %s", lastRV, ev.Type, st.Code, st.Reason, st.Message)
		}
		got = append(got, string(ev.Type)+" "+ev.Object.(*corev1.ConfigMap).Name)
	}
	if want := []string{"ADDED b", "DELETED a"}; !slices.Equal(got, want) {
		t.Errorf("resumed watch saw %v, want %v", got, want)
	}

	// Once etcd has compacted the history, a revision from before it is
	// gone, and the server says so in a way client-go decodes.
	t.Run("too old is 410 Gone", func(t *testing.T) {
		ec, err := clientv3.New(clientv3.Config{Endpoints: []string{cp.EtcdEndpoint()}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer ec.Close()
		resp, err := ec.Get(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ec.Compact(ctx, resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
		w := watchConfigMaps(t, cp.Client, "", metav1.ListOptions{ResourceVersion: lastRV})
		ev, ok := nextEvent(t, w, 30*time.Second)
		if !ok || ev.Type != watch.Error {
			t.Fatalf("got %s %#v, want ERROR", ev.Type, ev.Object)
		}
		st, isStatus := ev.Object.(*metav1.Status)
		if !isStatus || st.Code != 410 || (st.Reason != metav1.StatusReasonExpired && st.Reason != metav1.StatusReasonGone) {
			t.Fatalf("error event %#v, want 410 Expired", ev.Object)
		}
		if _, ok := nextEvent(t, w, 30*time.Second); ok {
			t.Error("watch stayed open after 410")
		}
	})
}
