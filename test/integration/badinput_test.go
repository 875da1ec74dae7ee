package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestBadInput sends malformed and mismatched requests over raw HTTP and
// checks that each gets upstream's Status, code and reason, and changes
// nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	cp := startAPIOnly(t)
	ctx := testCtx(t)
	ns := newNamespace(t, cp.Client)
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	existing, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "existing"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cmURL := "/api/v1/namespaces/" + ns + "/configmaps"
	podURL := "/api/v1/namespaces/" + ns + "/pods"
	podWithFoo := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s"},"spec":{"foo":1,"containers":[{"name":"c","image":"nginx","bar":true}]}}`
	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"` + strings.Repeat("x", 3<<20) + `"}}`

	// nothingChanged checks the namespace still holds only "existing",
	// unchanged, and no pods.
	nothingChanged := func(t *testing.T) {
		t.Helper()
		l, err := cp.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].Name != "existing" || l.Items[0].ResourceVersion != existing.ResourceVersion {
			t.Errorf("configmaps changed: %v", names(l.Items))
		}
		pods, err := cp.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Name, "ok-") {
				t.Errorf("unexpected pod %s", p.Name)
			}
		}
	}

	cases := []struct {
		name        string
		method      string
		path        string
		contentType string
		accept      string
		body        string
		wantCode    int
		wantReason  metav1.StatusReason
		wantMsg     []string
	}{
		{name: "malformed JSON", method: "POST", path: cmURL, body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		{name: "JSON of the wrong shape", method: "POST", path: cmURL, body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":[1,2]}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		{name: "empty body", method: "POST", path: cmURL, body: ``,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		{name: "malformed YAML", method: "POST", path: cmURL, contentType: "application/yaml", body: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n  - : :",
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		{name: "kind not matching URL", method: "POST", path: cmURL, body: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{"Secret", "ConfigMap"}},
		{name: "apiVersion not matching URL", method: "POST", path: cmURL, body: `{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{"apps/v1"}},
		{name: "body over 3 MiB", method: "POST", path: cmURL, body: big,
			wantCode: 413, wantReason: metav1.StatusReasonRequestEntityTooLarge},
		{name: "unknown fields Strict", method: "POST", path: podURL + "?fieldValidation=Strict", body: strings.ReplaceAll(podWithFoo, "%s", "strict"),
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{`unknown field "spec.foo"`, `unknown field "spec.containers[0].bar"`}},
		{name: "duplicate field Strict", method: "POST", path: cmURL + "?fieldValidation=Strict", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","name":"y"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{`duplicate field "metadata.name"`}},
		{name: "bad fieldValidation value", method: "POST", path: cmURL + "?fieldValidation=Loud", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{"fieldValidation"}},
		{name: "unknown resource", method: "GET", path: "/api/v1/namespaces/" + ns + "/widgets",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "unknown resource create", method: "POST", path: "/api/v1/namespaces/" + ns + "/widgets", body: `{"metadata":{"name":"x"}}`,
			wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "unknown group", method: "GET", path: "/apis/widgets.example.com/v1/widgets",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "unknown version", method: "GET", path: "/apis/apps/v1beta9/deployments",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound},
		{name: "name in URL differs from body on PUT", method: "PUT", path: cmURL + "/existing",
			body:     `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other","resourceVersion":"` + existing.ResourceVersion + `"},"data":{"k":"changed"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMsg: []string{"other", "existing"}},
		{name: "protobuf Table only", method: "GET", path: cmURL + "/existing", accept: "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
			wantCode: 406, wantReason: metav1.StatusReasonNotAcceptable},
		{name: "unsupported body type", method: "POST", path: cmURL, contentType: "text/plain", body: `name: x`,
			wantCode: 415, wantReason: metav1.StatusReasonUnsupportedMediaType},
		{name: "bad dryRun value", method: "POST", path: cmURL + "?dryRun=Some", body: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := doRaw(t, hc, cp.Config.Host, tc.method, tc.path, tc.contentType, tc.accept, tc.body)
			st := decodeStatus(t, resp)
			if resp.StatusCode != tc.wantCode || st.Code != int32(tc.wantCode) || st.Reason != tc.wantReason || st.Status != metav1.StatusFailure {
				t.Errorf("got HTTP %d, Status %d %q %q: %s; want %d %s", resp.StatusCode, st.Code, st.Reason, st.Status, st.Message, tc.wantCode, tc.wantReason)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(st.Message, m) {
					t.Errorf("message %q lacks %q", st.Message, m)
				}
			}
			nothingChanged(t)
		})
	}

	// Warn and Ignore accept the object; only Warn says what was dropped.
	for _, tc := range []struct {
		mode     string
		wantWarn bool
	}{{"Warn", true}, {"Ignore", false}, {"", true}} {
		t.Run("unknown fields "+tc.mode, func(t *testing.T) {
			name := "ok-" + strings.ToLower(tc.mode)
			if tc.mode == "" {
				name = "ok-default"
			}
			path := podURL
			if tc.mode != "" {
				path += "?fieldValidation=" + tc.mode
			}
			resp := doRaw(t, hc, cp.Config.Host, "POST", path, "", "", strings.ReplaceAll(podWithFoo, "%s", name))
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				t.Fatalf("got %d: %s", resp.StatusCode, body)
			}
			warn := strings.Join(resp.Header.Values("Warning"), "\n")
			if tc.wantWarn {
				for _, f := range []string{`unknown field \"spec.foo\"`, `unknown field \"spec.containers[0].bar\"`} {
					if !strings.Contains(warn, f) {
						t.Errorf("Warning header %q lacks %s", warn, f)
					}
				}
				if !strings.HasPrefix(warn, "299 ") {
					t.Errorf("Warning header %q, want code 299", warn)
				}
			} else if warn != "" {
				t.Errorf("Warning header %q, want none", warn)
			}
			if _, err := cp.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("pod not stored: %v", err)
			}
		})
	}
}

func doRaw(t *testing.T, hc *http.Client, host, method, path, contentType, accept, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, host+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// decodeStatus reads a response that must be a metav1.Status in JSON.
func decodeStatus(t *testing.T, resp *http.Response) metav1.Status {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || st.APIVersion != "v1" {
		t.Fatalf("HTTP %d: body is not a v1 Status (%v): %.300s", resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	return st
}
