package integration

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

func TestClientGoDiscovery(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	ctx := testCtx(t)
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}

	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatalf("ServerGroupsAndResources (aggregated discovery): %v", err)
	}
	byName := map[string]metav1.APIResource{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			if !strings.Contains(r.Name, "/") {
				byName[r.Name+"."+strings.Split(l.GroupVersion, "/")[0]] = r
			}
		}
	}
	for _, tc := range []struct {
		key, short string
		all        bool
	}{
		{"pods.v1", "po", true}, {"deployments.apps", "deploy", true}, {"services.v1", "svc", true},
		{"configmaps.v1", "cm", false}, {"namespaces.v1", "ns", false}, {"nodes.v1", "no", false},
		{"daemonsets.apps", "ds", true}, {"replicasets.apps", "rs", true}, {"statefulsets.apps", "sts", true},
		{"endpoints.v1", "ep", false}, {"events.v1", "ev", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			r, ok := byName[tc.key]
			if !ok {
				t.Fatalf("%s not discovered", tc.key)
			}
			if !slices.Contains(r.ShortNames, tc.short) {
				t.Errorf("short names %v, want %s", r.ShortNames, tc.short)
			}
			if got := slices.Contains(r.Categories, "all"); got != tc.all {
				t.Errorf("categories %v: in all = %v, want %v", r.Categories, got, tc.all)
			}
			if len(r.Verbs) == 0 {
				t.Error("no verbs")
			}
		})
	}

	t.Run("aggregated matches legacy", func(t *testing.T) {
		rc := restClient(t, cp.Config)
		raw, err := rc.Get().AbsPath("/apis").SetHeader("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json").Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var agg apidiscoveryv2.APIGroupDiscoveryList
		if err := json.Unmarshal(raw, &agg); err != nil || agg.Kind != "APIGroupDiscoveryList" {
			t.Fatalf("aggregated /apis: kind %q err %v", agg.Kind, err)
		}
		legacy, err := dc.ServerGroups()
		if err != nil {
			t.Fatal(err)
		}
		var aggGroups, legacyGroups []string
		for _, g := range agg.Items {
			aggGroups = append(aggGroups, g.Name)
		}
		for _, g := range legacy.Groups {
			if g.Name != "" {
				legacyGroups = append(legacyGroups, g.Name)
			}
		}
		slices.Sort(aggGroups)
		slices.Sort(legacyGroups)
		if !slices.Equal(aggGroups, legacyGroups) {
			t.Errorf("aggregated groups %v, legacy %v", aggGroups, legacyGroups)
		}
		for _, want := range []string{"apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io", "scheduling.k8s.io"} {
			if !slices.Contains(aggGroups, want) {
				t.Errorf("group %s missing", want)
			}
		}
	})

	t.Run("health and version", func(t *testing.T) {
		rc := restClient(t, cp.Config)
		for _, p := range []string{"/healthz", "/livez", "/readyz", "/version"} {
			var code int
			body, err := rc.Get().AbsPath(p).Do(ctx).StatusCode(&code).Raw()
			if err != nil || code != 200 {
				t.Errorf("%s: %d %v", p, code, err)
			}
			if p != "/version" && string(body) != "ok" {
				t.Errorf("%s body %q", p, body)
			}
		}
		v, err := dc.ServerVersion()
		if err != nil || v.Major != "1" || v.GitVersion == "" {
			t.Errorf("version %+v %v", v, err)
		}
	})

	t.Run("unauthenticated is 401 Status", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := hc.Get(cp.Config.Host + "/api/v1/namespaces")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st metav1.Status
		body, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("401 body not JSON: %q", body)
		}
		if resp.StatusCode != 401 || st.Kind != "Status" || st.Code != 401 || st.Reason != metav1.StatusReasonUnauthorized {
			t.Errorf("got %d %+v", resp.StatusCode, st)
		}
		// Health stays public.
		resp2, err := hc.Get(cp.Config.Host + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != 200 {
			t.Errorf("anonymous /healthz: %d", resp2.StatusCode)
		}
	})
}

// restClient is an untyped REST client on the admin config.
func restClient(t *testing.T, cfg *rest.Config) *rest.RESTClient {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestClientGoTablesAndMetrics(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	c := cp.Client
	ctx := testCtx(t)
	ns := newNamespace(t, c)
	if _, err := c.CoreV1().Pods(ns).Create(ctx, makePod("tbl").Node("n1").Obj(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, makeDeployment("tbl", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rc := restClient(t, cp.Config)
	const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io"
	cases := []struct {
		path    string
		columns []string
		wide    []string
		cells   func(row []any) string
	}{
		{"/api/v1/namespaces/" + ns + "/pods", []string{"Name", "Ready", "Status", "Restarts", "Age"}, []string{"IP", "Node"},
			func(row []any) string { return row[0].(string) + " " + row[1].(string) + " " + row[2].(string) }},
		{"/apis/apps/v1/namespaces/" + ns + "/deployments", []string{"Name", "Ready", "Up-to-date", "Available", "Age"}, []string{"Containers", "Images", "Selector"},
			func(row []any) string { return row[0].(string) + " " + row[1].(string) }},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			raw, err := rc.Get().AbsPath(tc.path).SetHeader("Accept", tableAccept).Do(ctx).Raw()
			if err != nil {
				t.Fatal(err)
			}
			var tbl metav1.Table
			if err := json.Unmarshal(raw, &tbl); err != nil || tbl.Kind != "Table" {
				t.Fatalf("not a Table: %v %s", err, raw)
			}
			var cols, wide []string
			for _, col := range tbl.ColumnDefinitions {
				if col.Priority == 0 {
					cols = append(cols, col.Name)
				} else {
					wide = append(wide, col.Name)
				}
			}
			if !slices.Equal(cols, tc.columns) {
				t.Errorf("columns %v, want %v", cols, tc.columns)
			}
			for _, w := range tc.wide {
				if !slices.Contains(wide, w) {
					t.Errorf("wide columns %v lack %s", wide, w)
				}
			}
			if len(tbl.Rows) != 1 || len(tbl.Rows[0].Cells) != len(tbl.ColumnDefinitions) {
				t.Fatalf("rows %+v", tbl.Rows)
			}
			t.Logf("row: %s", tc.cells(tbl.Rows[0].Cells))
			if tbl.Rows[0].Cells[0] != "tbl" {
				t.Errorf("first cell %v, want tbl", tbl.Rows[0].Cells[0])
			}
		})
	}
	t.Run("pod row values", func(t *testing.T) {
		raw, err := rc.Get().AbsPath("/api/v1/namespaces/"+ns+"/pods/tbl").SetHeader("Accept", tableAccept).Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var tbl metav1.Table
		_ = json.Unmarshal(raw, &tbl)
		if len(tbl.Rows) != 1 {
			t.Fatalf("rows %+v", tbl.Rows)
		}
		cells := tbl.Rows[0].Cells
		if cells[1] != "0/1" || cells[2] != "Pending" {
			t.Errorf("ready=%v status=%v, want 0/1 Pending", cells[1], cells[2])
		}
	})
	t.Run("deployment row values", func(t *testing.T) {
		raw, err := rc.Get().AbsPath("/apis/apps/v1/namespaces/"+ns+"/deployments/tbl").SetHeader("Accept", tableAccept).Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var tbl metav1.Table
		_ = json.Unmarshal(raw, &tbl)
		if len(tbl.Rows) != 1 || tbl.Rows[0].Cells[1] != "0/2" {
			t.Errorf("rows %+v, want ready 0/2", tbl.Rows)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// A known error, so a non-200 code shows up too.
		_, _ = c.CoreV1().ConfigMaps(ns).Get(ctx, "missing", metav1.GetOptions{})
		body, err := rc.Get().AbsPath("/metrics").Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		text := string(body)
		for _, want := range []string{
			`apiserver_request_total{code="201",group="",resource="pods",subresource="",verb="create",version="v1"}`,
			`apiserver_request_total{code="404",group="",resource="configmaps",subresource="",verb="get",version="v1"}`,
			`apiserver_request_duration_seconds_bucket{group="apps",resource="deployments",subresource="",verb="create",version="v1"`,
			"etcd_",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}
