package apiserver

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/yaml"
)

// FuzzDecodeObject checks that decodeObject never panics and that it
// either rejects a body with a 400 Status or yields an object of the
// kind the URL names, whatever the body and the fieldValidation mode.
func FuzzDecodeObject(f *testing.F) {
	configMap := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"b"}},"data":{"k":"v"}}`
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80}]}]}}`
	podYAML, err := yaml.JSONToYAML([]byte(pod))
	if err != nil {
		f.Fatal(err)
	}
	podFromYAML, err := yaml.YAMLToJSON(podYAML)
	if err != nil {
		f.Fatal(err)
	}
	deep := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","annotations":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}}`
	seeds := []struct {
		body string
		mode fieldValidation
	}{
		{configMap, validationStrict},
		{pod, validationWarn},
		{pod[:len(pod)/2], validationStrict},
		{string(podFromYAML), validationIgnore},
		{string(podYAML), validationWarn}, // YAML is not JSON: must be a 400
		{deep, validationStrict},
		{`{"kind":"Pod","spec":{"foo":1},"metadata":{"name":"x","name":"y"}}`, validationStrict},
		{`{"kind":"Secret"}`, validationWarn},
		{`{"apiVersion":"apps/v1"}`, validationWarn},
		{`null`, validationIgnore},
		{`[]`, validationIgnore},
		{`"\ud800"`, validationIgnore},
		{``, validationWarn},
	}
	modes := []fieldValidation{validationIgnore, validationWarn, validationStrict}
	for _, s := range seeds {
		for i, m := range modes {
			if m == s.mode {
				f.Add([]byte(s.body), uint8(i))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, modeIdx uint8) {
		mode := modes[int(modeIdx)%len(modes)]
		check := func(kind string, gotKind func() string, warnings []string, err error) {
			if err != nil {
				var st apierrors.APIStatus
				if !errors.As(err, &st) || st.Status().Code != http.StatusBadRequest || st.Status().Reason != "BadRequest" {
					t.Fatalf("error is not a 400 BadRequest Status: %#v", err)
				}
				if len(warnings) != 0 {
					t.Fatalf("warnings %v alongside an error", warnings)
				}
				return
			}
			if gotKind() != kind {
				t.Fatalf("decoded kind %q, want %q", gotKind(), kind)
			}
			if mode != validationWarn && len(warnings) != 0 {
				t.Fatalf("mode %s gave warnings %v", mode, warnings)
			}
		}
		var cm corev1.ConfigMap
		w, err := decodeObject(data, &cm, corev1.SchemeGroupVersion.WithKind("ConfigMap"), mode)
		check("ConfigMap", func() string { return cm.Kind }, w, err)
		var p corev1.Pod
		w, err = decodeObject(data, &p, corev1.SchemeGroupVersion.WithKind("Pod"), mode)
		check("Pod", func() string { return p.Kind }, w, err)
	})
}
