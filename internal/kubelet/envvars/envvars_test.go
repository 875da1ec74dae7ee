package envvars

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// objects is an in-memory ConfigMap/Secret store for Sources.
type objects struct {
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	fetches    map[string]int
}

func (o *objects) sources() Sources {
	return Sources{
		ConfigMap: func(ns, name string) (*corev1.ConfigMap, error) {
			o.fetches["cm/"+ns+"/"+name]++
			if name == "broken" {
				return nil, errors.New("apiserver unreachable")
			}
			if cm, ok := o.configMaps[ns+"/"+name]; ok {
				return cm, nil
			}
			return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
		},
		Secret: func(ns, name string) (*corev1.Secret, error) {
			o.fetches["secret/"+ns+"/"+name]++
			if s, ok := o.secrets[ns+"/"+name]; ok {
				return s, nil
			}
			return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
		},
	}
}

func newObjects() *objects {
	return &objects{
		configMaps: map[string]*corev1.ConfigMap{
			"ns/cfg": {Data: map[string]string{"COLOR": "blue", "SIZE": "L", "1badkey": "relaxed", "ключ": "non-ascii"},
				BinaryData: map[string][]byte{"BLOB": []byte("ignored")}},
			"ns/more": {Data: map[string]string{"SIZE": "XL"}},
		},
		secrets: map[string]*corev1.Secret{
			"ns/creds": {Data: map[string][]byte{"user": []byte("admin"), "pass": []byte("s3cret")}},
		},
		fetches: map[string]int{},
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "ns", Name: "web-1", UID: "uid-1",
			Labels:      map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{"note": `say "hi"`},
		},
		Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "robot"},
	}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

func fieldRef(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func resRef(name, res, divisor string) corev1.EnvVar {
	sel := &corev1.ResourceFieldSelector{Resource: res}
	if divisor != "" {
		sel.Divisor = resource.MustParse(divisor)
	}
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: sel}}
}

func cmKey(name, cm, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key, Optional: ptr.To(optional)}}}
}

func secretKey(name, secret, key string, optional bool) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key, Optional: ptr.To(optional)}}}
}

func fromCM(name, prefix string, optional bool) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: ptr.To(optional)}}
}

func fromSecret(name, prefix string, optional bool) corev1.EnvFromSource {
	return corev1.EnvFromSource{Prefix: prefix, SecretRef: &corev1.SecretEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: ptr.To(optional)}}
}

func TestContainer(t *testing.T) {
	services := []*corev1.Service{
		svc("default", "kubernetes", "10.0.0.1"),
		svc("ns", "db", "10.0.0.7"),
	}
	tests := []struct {
		name    string
		links   *bool
		pod     func(*corev1.Pod)
		c       corev1.Container
		src     func(*Sources)
		want    []corev1.EnvVar
		wantErr string
	}{
		{
			name: "precedence and order: services, envFrom, env",
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{fromCM("cfg", "", false), fromCM("more", "", false), fromSecret("creds", "DB_", false)},
				Env: []corev1.EnvVar{
					env("DB_SERVICE_HOST", "overridden"),
					env("COLOR", "red"),
					env("EXTRA", "x"),
					env("EXTRA", "y"),
				},
			},
			want: []corev1.EnvVar{
				env("DB_SERVICE_HOST", "overridden"),
				env("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
				env("1badkey", "relaxed"),
				env("COLOR", "red"),
				env("SIZE", "XL"),
				env("DB_pass", "s3cret"),
				env("DB_user", "admin"),
				env("EXTRA", "y"),
			},
		},
		{
			name:  "service links disabled keeps the master service",
			links: ptr.To(false),
			c:     corev1.Container{Env: []corev1.EnvVar{env("A", "1")}},
			want:  []corev1.EnvVar{env("KUBERNETES_SERVICE_HOST", "10.0.0.1"), env("A", "1")},
		},
		{
			name:  "service links explicitly enabled",
			links: ptr.To(true),
			want:  []corev1.EnvVar{env("DB_SERVICE_HOST", "10.0.0.7"), env("KUBERNETES_SERVICE_HOST", "10.0.0.1")},
		},
		{
			name: "expansion sees services, envFrom and earlier env only",
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{fromCM("cfg", "", false)},
				Env: []corev1.EnvVar{
					env("URL", "http://$(DB_SERVICE_HOST):$(PORT)/$(COLOR)"),
					env("PORT", "5432"),
					env("URL2", "$(DB_SERVICE_HOST):$(PORT) $$(PORT)"),
					env("SELF", "[$(SELF)]"),
					env("EMPTY", ""),
				},
			},
			want: []corev1.EnvVar{
				env("DB_SERVICE_HOST", "10.0.0.7"), env("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
				env("1badkey", "relaxed"), env("COLOR", "blue"), env("SIZE", "L"),
				env("URL", "http://10.0.0.7:$(PORT)/blue"),
				env("PORT", "5432"),
				env("URL2", "10.0.0.7:5432 $(PORT)"),
				env("SELF", "[$(SELF)]"),
				env("EMPTY", ""),
			},
		},
		{
			name: "envFrom values are not expanded and invalid names are skipped",
			src: func(s *Sources) {
				get := s.ConfigMap
				s.ConfigMap = func(ns, name string) (*corev1.ConfigMap, error) {
					if name == "raw" {
						return &corev1.ConfigMap{Data: map[string]string{"REF": "$(DB_SERVICE_HOST)"}}, nil
					}
					return get(ns, name)
				}
			},
			c: corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("raw", "", false), fromCM("cfg", "BAD=", false), fromCM("more", "P_", false)}},
			want: []corev1.EnvVar{
				env("DB_SERVICE_HOST", "10.0.0.7"), env("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
				env("REF", "$(DB_SERVICE_HOST)"), env("P_SIZE", "XL"),
			},
		},
		{
			name:  "optional missing sources are skipped",
			links: ptr.To(false),
			c: corev1.Container{
				EnvFrom: []corev1.EnvFromSource{fromCM("nope", "", true), fromSecret("nope", "", true)},
				Env: []corev1.EnvVar{
					cmKey("A", "nope", "k", true),
					cmKey("B", "cfg", "missing", true),
					secretKey("C", "nope", "k", true),
					secretKey("D", "creds", "missing", true),
					secretKey("E", "creds", "user", true),
					cmKey("F", "cfg", "COLOR", false),
				},
			},
			want: []corev1.EnvVar{env("KUBERNETES_SERVICE_HOST", "10.0.0.1"), env("E", "admin"), env("F", "blue")},
		},
		{
			name:    "required envFrom ConfigMap missing",
			c:       corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("nope", "", false)}},
			wantErr: `get ConfigMap ns/nope: configmaps "nope" not found`,
		},
		{
			name:    "required envFrom Secret missing",
			c:       corev1.Container{EnvFrom: []corev1.EnvFromSource{fromSecret("nope", "", false)}},
			wantErr: `get Secret ns/nope: secrets "nope" not found`,
		},
		{
			name:    "optional does not hide other errors",
			c:       corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("broken", "", true)}},
			wantErr: "apiserver unreachable",
		},
		{
			name:    "required ConfigMap key missing",
			c:       corev1.Container{Env: []corev1.EnvVar{cmKey("A", "cfg", "k", false)}},
			wantErr: "couldn't find key k in ConfigMap ns/cfg",
		},
		{
			name:    "required Secret key missing",
			c:       corev1.Container{Env: []corev1.EnvVar{secretKey("A", "creds", "k", false)}},
			wantErr: "couldn't find key k in Secret ns/creds",
		},
		{
			name:    "required ConfigMap missing for key ref",
			c:       corev1.Container{Env: []corev1.EnvVar{cmKey("A", "nope", "k", false)}},
			wantErr: `configmaps "nope" not found`,
		},
		{
			name:    "no ConfigMap source",
			src:     func(s *Sources) { s.ConfigMap = nil },
			c:       corev1.Container{Env: []corev1.EnvVar{cmKey("A", "cfg", "k", false)}},
			wantErr: "no ConfigMap source",
		},
		{
			name:  "downward API fields",
			links: ptr.To(false),
			src: func(s *Sources) {
				s.Services = nil
				s.HostIPs = []string{"192.168.1.5", "fd00::5"}
				s.PodIP = "10.244.0.9"
			},
			c: corev1.Container{Env: []corev1.EnvVar{
				fieldRef("NAME", "metadata.name"),
				fieldRef("NS", "metadata.namespace"),
				fieldRef("UID", "metadata.uid"),
				fieldRef("APP", "metadata.labels['app']"),
				fieldRef("MISSING", "metadata.labels['nope']"),
				fieldRef("NOTE", "metadata.annotations['note']"),
				fieldRef("LABELS", "metadata.labels"),
				fieldRef("NODE", "spec.nodeName"),
				fieldRef("SA", "spec.serviceAccountName"),
				fieldRef("HOST_IP", "status.hostIP"),
				fieldRef("HOST_IPS", "status.hostIPs"),
				fieldRef("POD_IP", "status.podIP"),
				fieldRef("POD_IPS", "status.podIPs"),
				{Name: "NO_VERSION", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			}},
			want: []corev1.EnvVar{
				env("NAME", "web-1"), env("NS", "ns"), env("UID", "uid-1"),
				env("APP", "web"), env("MISSING", ""), env("NOTE", `say "hi"`),
				env("LABELS", "app=\"web\"\ntier=\"front\""),
				env("NODE", "node-a"), env("SA", "robot"),
				env("HOST_IP", "192.168.1.5"), env("HOST_IPS", "192.168.1.5,fd00::5"),
				env("POD_IP", "10.244.0.9"), env("POD_IPS", "10.244.0.9"),
				env("NO_VERSION", "web-1"),
			},
		},
		{
			name:    "host IP unknown",
			c:       corev1.Container{Env: []corev1.EnvVar{fieldRef("HOST_IP", "status.hostIP")}},
			wantErr: "host IP unknown",
		},
		{
			name:    "unsupported field path",
			c:       corev1.Container{Env: []corev1.EnvVar{fieldRef("X", "spec.restartPolicy")}},
			wantErr: "unsupported fieldPath: spec.restartPolicy",
		},
		{
			name:    "unsupported subscripted field path",
			c:       corev1.Container{Env: []corev1.EnvVar{fieldRef("X", "spec.nodeSelector['a']")}},
			wantErr: "unsupported fieldPath",
		},
		{
			name:    "unsupported field API version",
			c:       corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v2", FieldPath: "metadata.name"}}}}},
			wantErr: "unsupported pod version: v2",
		},
		{
			name:  "resource fields with divisors and defaulted limits",
			links: ptr.To(false),
			src: func(s *Sources) {
				s.Services = nil
				s.NodeAllocatable = corev1.ResourceList{
					corev1.ResourceCPU:              resource.MustParse("3500m"),
					corev1.ResourceMemory:           resource.MustParse("8Gi"),
					corev1.ResourceEphemeralStorage: resource.MustParse("20G"),
				}
			},
			c: corev1.Container{
				Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{
						corev1.ResourceCPU:                   resource.MustParse("250m"),
						corev1.ResourceMemory:                resource.MustParse("0"),
						corev1.ResourceName("hugepages-2Mi"): resource.MustParse("4Mi"),
					},
					Requests: corev1.ResourceList{
						corev1.ResourceMemory:           resource.MustParse("64Mi"),
						corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"),
					},
				},
				Env: []corev1.EnvVar{
					resRef("CPU_LIMIT", "limits.cpu", ""),
					resRef("CPU_LIMIT_M", "limits.cpu", "1m"),
					resRef("MEM_LIMIT", "limits.memory", "1Mi"),
					resRef("EPH_LIMIT", "limits.ephemeral-storage", "1G"),
					resRef("CPU_REQ", "requests.cpu", ""),
					resRef("MEM_REQ", "requests.memory", ""),
					resRef("MEM_REQ_MI", "requests.memory", "1Mi"),
					resRef("MEM_REQ_G", "requests.memory", "1G"),
					resRef("EPH_REQ", "requests.ephemeral-storage", "1Ki"),
					resRef("HP_LIMIT", "limits.hugepages-2Mi", "1Mi"),
					resRef("HP_REQ", "requests.hugepages-2Mi", ""),
				},
			},
			want: []corev1.EnvVar{
				env("CPU_LIMIT", "1"), env("CPU_LIMIT_M", "250"),
				env("MEM_LIMIT", "8192"), env("EPH_LIMIT", "20"),
				env("CPU_REQ", "0"), env("MEM_REQ", "67108864"), env("MEM_REQ_MI", "64"), env("MEM_REQ_G", "1"),
				env("EPH_REQ", "1048576"), env("HP_LIMIT", "4"), env("HP_REQ", "0"),
			},
		},
		{
			name:  "pod-level limits bound unset container limits",
			links: ptr.To(false),
			pod: func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")}}
			},
			src: func(s *Sources) {
				s.Services = nil
				s.NodeAllocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")}
			},
			c: corev1.Container{Env: []corev1.EnvVar{
				resRef("CPU", "limits.cpu", ""), resRef("MEM", "limits.memory", "1Mi"), resRef("EPH", "limits.ephemeral-storage", ""),
			}},
			want: []corev1.EnvVar{env("CPU", "2"), env("MEM", "1024"), env("EPH", "0")},
		},
		{
			name:    "unsupported resource",
			c:       corev1.Container{Env: []corev1.EnvVar{resRef("X", "limits.nvidia.com/gpu", "")}},
			wantErr: "unsupported container resource: limits.nvidia.com/gpu",
		},
		{
			name:    "resource without kind",
			c:       corev1.Container{Env: []corev1.EnvVar{resRef("X", "cpu", "")}},
			wantErr: "unsupported container resource: cpu",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod()
			pod.Spec.EnableServiceLinks = tt.links
			if tt.pod != nil {
				tt.pod(pod)
			}
			src := newObjects().sources()
			src.Services = services
			if tt.src != nil {
				tt.src(&src)
			}
			got, err := Container(pod, &tt.c, src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Container: %v", err)
			}
			checkEnv(t, got, tt.want)
		})
	}
}

func TestContainerFetchesEachObjectOnce(t *testing.T) {
	objs := newObjects()
	c := corev1.Container{
		EnvFrom: []corev1.EnvFromSource{fromCM("cfg", "", false), fromSecret("creds", "", false)},
		Env: []corev1.EnvVar{
			cmKey("A", "cfg", "COLOR", false), cmKey("B", "cfg", "SIZE", false),
			secretKey("C", "creds", "user", false), secretKey("D", "creds", "pass", false),
		},
	}
	if _, err := Container(testPod(), &c, objs.sources()); err != nil {
		t.Fatalf("Container: %v", err)
	}
	for key, n := range objs.fetches {
		if n != 1 {
			t.Errorf("%s fetched %d times, want once", key, n)
		}
	}
	if len(objs.fetches) != 2 {
		t.Errorf("fetches = %v, want the ConfigMap and the Secret", objs.fetches)
	}
}

func TestContainerNilObjectIsNotFound(t *testing.T) {
	src := Sources{ConfigMap: func(string, string) (*corev1.ConfigMap, error) { return nil, nil }}
	c := corev1.Container{Env: []corev1.EnvVar{cmKey("A", "cfg", "k", true)}}
	got, err := Container(testPod(), &c, src)
	if err != nil || len(got) != 0 {
		t.Fatalf("Container = %v, %v; want nothing and no error", got, err)
	}
	c.Env[0] = cmKey("A", "cfg", "k", false)
	if _, err := Container(testPod(), &c, src); !apierrors.IsNotFound(err) {
		t.Fatalf("err = %v, want a NotFound error", err)
	}
}
