package envvars

import (
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// masterService is the service every pod gets variables for, even with
// enableServiceLinks off, because in-cluster clients find the API server
// through KUBERNETES_SERVICE_HOST/PORT.
const masterService = "kubernetes"

// ServiceEnv returns the Docker-link style variables for the services a
// pod in namespace sees: those of its own namespace when
// enableServiceLinks is set, and always the "kubernetes" service of the
// default namespace (a same-named service of the pod's own namespace
// takes its place). services may hold any namespaces; the others are
// ignored. Services without a cluster IP (headless, ExternalName) give
// nothing. Services come in name order, each as NAME_SERVICE_HOST,
// NAME_SERVICE_PORT, NAME_SERVICE_PORT_<PORTNAME>..., then the link
// variables NAME_PORT and NAME_PORT_<port>_<PROTO>{,_PROTO,_PORT,_ADDR}.
func ServiceEnv(services []*corev1.Service, namespace string, enableServiceLinks bool) []corev1.EnvVar {
	chosen := map[string]*corev1.Service{}
	for _, svc := range services {
		if svc == nil || !hasClusterIP(svc) {
			continue
		}
		switch {
		case svc.Namespace == namespace && enableServiceLinks:
			// The pod's own namespace wins over the master service.
			chosen[svc.Name] = svc
		case svc.Namespace == metav1.NamespaceDefault && svc.Name == masterService:
			if _, taken := chosen[svc.Name]; !taken {
				chosen[svc.Name] = svc
			}
		}
	}
	names := make([]string, 0, len(chosen))
	for name := range chosen {
		names = append(names, name)
	}
	sort.Strings(names)

	var env orderedEnv
	for _, name := range names {
		serviceVars(&env, chosen[name])
	}
	return env.list()
}

func hasClusterIP(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

// serviceVars adds one service's variables to env.
func serviceVars(env *orderedEnv, svc *corev1.Service) {
	prefix := varName(svc.Name)
	ip := svc.Spec.ClusterIP
	env.set(prefix+"_SERVICE_HOST", ip)
	ports := svc.Spec.Ports
	if len(ports) == 0 {
		return
	}
	env.set(prefix+"_SERVICE_PORT", strconv.Itoa(int(ports[0].Port)))
	for _, p := range ports {
		if p.Name != "" {
			env.set(prefix+"_SERVICE_PORT_"+varName(p.Name), strconv.Itoa(int(p.Port)))
		}
	}
	for i, p := range ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		lower := strings.ToLower(proto)
		port := strconv.Itoa(int(p.Port))
		url := lower + "://" + net.JoinHostPort(ip, port)
		if i == 0 {
			// Docker links single out the first port.
			env.set(prefix+"_PORT", url)
		}
		pp := prefix + "_PORT_" + port + "_" + strings.ToUpper(proto)
		env.set(pp, url)
		env.set(pp+"_PROTO", lower)
		env.set(pp+"_PORT", port)
		env.set(pp+"_ADDR", ip)
	}
}

// varName turns a DNS label into the variable-name form services use.
func varName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

// orderedEnv is a list of variables in first-definition order where a
// later definition replaces the value of an earlier one of the same name,
// which is how the kubelet's sources override each other while keeping
// the result deterministic.
type orderedEnv struct {
	vars  []corev1.EnvVar
	index map[string]int
}

func (e *orderedEnv) set(name, value string) {
	if i, ok := e.index[name]; ok {
		e.vars[i].Value = value
		return
	}
	if e.index == nil {
		e.index = map[string]int{}
	}
	e.index[name] = len(e.vars)
	e.vars = append(e.vars, corev1.EnvVar{Name: name, Value: value})
}

func (e *orderedEnv) get(name string) (string, bool) {
	i, ok := e.index[name]
	if !ok {
		return "", false
	}
	return e.vars[i].Value, true
}

func (e *orderedEnv) list() []corev1.EnvVar { return e.vars }
