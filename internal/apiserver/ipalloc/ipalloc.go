// Package ipalloc gives Services their cluster IPs and node ports. Each
// address or port taken is a key in etcd created in a transaction, so two
// API servers can never hand out the same one, and a restart forgets
// nothing.
package ipalloc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver"
)

// Config configures the allocator.
type Config struct {
	// ServiceCIDR is where cluster IPs come from (default 10.43.0.0/16).
	ServiceCIDR *net.IPNet
	// NodePortMin and NodePortMax bound node ports (default 30000-32767).
	NodePortMin, NodePortMax int
	// Client is the etcd client the reservations are kept with.
	Client *clientv3.Client
}

// Allocator is an admission plugin for Services.
type Allocator struct {
	cfg      Config
	first    uint32 // first usable address (network + 1)
	size     uint32 // usable addresses (network and broadcast excluded)
	mu       sync.Mutex
	reserved map[*apiserver.Attributes][]string
}

var (
	_ apiserver.Admitter  = (*Allocator)(nil)
	_ apiserver.Releaser  = (*Allocator)(nil)
	_ apiserver.Committer = (*Allocator)(nil)
)

const (
	ipPrefix   = "/registry/ranges/serviceips/"
	portPrefix = "/registry/ranges/servicenodeports/"
)

// New validates cfg and returns an allocator.
func New(cfg Config) (*Allocator, error) {
	if cfg.Client == nil {
		return nil, errors.New("ipalloc: no etcd client")
	}
	if cfg.ServiceCIDR == nil {
		_, cfg.ServiceCIDR, _ = net.ParseCIDR("10.43.0.0/16")
	}
	if cfg.NodePortMin == 0 && cfg.NodePortMax == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	if cfg.NodePortMin <= 0 || cfg.NodePortMax < cfg.NodePortMin || cfg.NodePortMax > 65535 {
		return nil, fmt.Errorf("ipalloc: invalid node port range %d-%d", cfg.NodePortMin, cfg.NodePortMax)
	}
	ip4 := cfg.ServiceCIDR.IP.To4()
	ones, bits := cfg.ServiceCIDR.Mask.Size()
	if ip4 == nil || bits != 32 || ones > 30 {
		return nil, fmt.Errorf("ipalloc: service CIDR %s must be IPv4 with room for at least two addresses", cfg.ServiceCIDR)
	}
	return &Allocator{
		cfg:      cfg,
		first:    binary.BigEndian.Uint32(ip4) + 1,
		size:     uint32(1)<<(32-ones) - 2,
		reserved: map[*apiserver.Attributes][]string{},
	}, nil
}

// FirstIP returns the service CIDR's first address, the `kubernetes`
// Service's IP.
func (a *Allocator) FirstIP() net.IP { return a.ip(0) }

func (a *Allocator) ip(offset uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a.first+offset)
	return ip
}

func (a *Allocator) contains(ip net.IP) bool {
	v4 := ip.To4()
	if v4 == nil {
		return false
	}
	n := binary.BigEndian.Uint32(v4)
	return n >= a.first && n < a.first+a.size
}

// Admit allocates a Service's cluster IP and node ports on create and the
// node ports an update adds.
func (a *Allocator) Admit(ctx context.Context, attrs *apiserver.Attributes) error {
	svc, ok := attrs.Object.(*corev1.Service)
	if !ok || attrs.Subresource != "" {
		return nil
	}
	var old *corev1.Service
	if attrs.Operation == apiserver.Update {
		old, _ = attrs.Old.(*corev1.Service)
	}
	var taken []string
	fail := func(err error) error {
		a.release(ctx, taken)
		return err
	}
	if needsClusterIP(svc) && (old == nil || !needsClusterIP(old) || old.Spec.ClusterIP == "") {
		k, err := a.allocateIP(ctx, svc)
		if err != nil {
			return fail(err)
		}
		taken = append(taken, k)
	}
	if needsNodePorts(svc) {
		had := map[int32]bool{}
		if old != nil && needsNodePorts(old) {
			for _, p := range old.Spec.Ports {
				had[p.NodePort] = true
			}
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort != 0 && had[p.NodePort] {
				continue
			}
			k, err := a.allocatePort(ctx, svc, i)
			if err != nil {
				return fail(err)
			}
			taken = append(taken, k)
		}
	} else {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	a.mu.Lock()
	a.reserved[attrs] = taken
	a.mu.Unlock()
	return nil
}

// Release gives back what Admit took for a write that did not happen.
func (a *Allocator) Release(ctx context.Context, attrs *apiserver.Attributes) {
	a.mu.Lock()
	taken := a.reserved[attrs]
	delete(a.reserved, attrs)
	a.mu.Unlock()
	a.release(ctx, taken)
}

// Committed frees what a deleted Service held, and node ports an update
// dropped.
func (a *Allocator) Committed(ctx context.Context, attrs *apiserver.Attributes) {
	a.mu.Lock()
	delete(a.reserved, attrs)
	a.mu.Unlock()
	old, ok := attrs.Old.(*corev1.Service)
	if !ok {
		return
	}
	keep := map[string]bool{}
	if svc, ok := attrs.Object.(*corev1.Service); ok && attrs.Operation == apiserver.Update {
		for _, k := range holdings(svc) {
			keep[k] = true
		}
	}
	var free []string
	for _, k := range holdings(old) {
		if !keep[k] {
			free = append(free, k)
		}
	}
	a.release(ctx, free)
}

// holdings returns the keys a stored Service holds.
func holdings(svc *corev1.Service) []string {
	var ks []string
	if needsClusterIP(svc) && svc.Spec.ClusterIP != "" {
		ks = append(ks, ipPrefix+svc.Spec.ClusterIP)
	}
	if needsNodePorts(svc) {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				ks = append(ks, portPrefix+strconv.Itoa(int(p.NodePort)))
			}
		}
	}
	return ks
}

func needsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func needsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func (a *Allocator) allocateIP(ctx context.Context, svc *corev1.Service) (string, error) {
	owner := svc.Namespace + "/" + svc.Name
	path := field.NewPath("spec", "clusterIPs").Index(0)
	if want := svc.Spec.ClusterIP; want != "" {
		ip := net.ParseIP(want)
		if ip == nil {
			return "", invalid(svc, field.Invalid(path, want, "must be a valid IP address"))
		}
		if !a.contains(ip) {
			return "", invalid(svc, field.Invalid(path, want, fmt.Sprintf("failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", want, want, a.cfg.ServiceCIDR)))
		}
		k := ipPrefix + ip.String()
		ok, err := a.reserve(ctx, k, owner)
		if err != nil {
			return "", apierrors.NewInternalError(err)
		}
		if !ok {
			return "", invalid(svc, field.Invalid(path, want, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", want)))
		}
		svc.Spec.ClusterIPs = []string{ip.String()}
		setSingleStack(svc)
		return k, nil
	}
	// Random probing finds a free address in a few tries until the range
	// is nearly full; then a scan from a random start finishes the job.
	start := rand.Uint32N(a.size)
	for i := uint32(0); i < a.size+32; i++ {
		off := (start + i - 32) % a.size
		if i < 32 {
			off = rand.Uint32N(a.size)
		}
		if off == 0 && a.size > 1 {
			continue // the first address is the kubernetes Service's
		}
		ip := a.ip(off)
		k := ipPrefix + ip.String()
		ok, err := a.reserve(ctx, k, owner)
		if err != nil {
			return "", apierrors.NewInternalError(err)
		}
		if ok {
			svc.Spec.ClusterIP = ip.String()
			svc.Spec.ClusterIPs = []string{ip.String()}
			setSingleStack(svc)
			return k, nil
		}
	}
	return "", invalid(svc, field.Invalid(path, "", "failed to allocate a serviceIP: range is full"))
}

func (a *Allocator) allocatePort(ctx context.Context, svc *corev1.Service, i int) (string, error) {
	owner := svc.Namespace + "/" + svc.Name
	p := &svc.Spec.Ports[i]
	path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
	if p.NodePort != 0 {
		if int(p.NodePort) < a.cfg.NodePortMin || int(p.NodePort) > a.cfg.NodePortMax {
			return "", invalid(svc, field.Invalid(path, p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", a.cfg.NodePortMin, a.cfg.NodePortMax)))
		}
		k := portPrefix + strconv.Itoa(int(p.NodePort))
		ok, err := a.reserve(ctx, k, owner)
		if err != nil {
			return "", apierrors.NewInternalError(err)
		}
		if !ok {
			return "", invalid(svc, field.Invalid(path, p.NodePort, "provided port is already allocated"))
		}
		return k, nil
	}
	n := a.cfg.NodePortMax - a.cfg.NodePortMin + 1
	start := rand.IntN(n)
	for i := 0; i < n; i++ {
		port := a.cfg.NodePortMin + (start+i)%n
		k := portPrefix + strconv.Itoa(port)
		ok, err := a.reserve(ctx, k, owner)
		if err != nil {
			return "", apierrors.NewInternalError(err)
		}
		if ok {
			p.NodePort = int32(port)
			return k, nil
		}
	}
	return "", invalid(svc, field.Invalid(path, 0, "failed to allocate a nodePort: range is full"))
}

// reserve creates key if absent; ok is false when someone holds it.
func (a *Allocator) reserve(ctx context.Context, key, owner string) (bool, error) {
	resp, err := a.cfg.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, owner)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("reserve %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

func (a *Allocator) release(ctx context.Context, keys []string) {
	for _, k := range keys {
		// A failed release leaks one address until an operator repairs
		// it; it never double-allocates, so it is not worth failing for.
		_, _ = a.cfg.Client.Delete(context.WithoutCancel(ctx), k)
	}
}

func invalid(svc *corev1.Service, e *field.Error) error {
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, field.ErrorList{e})
}

// setSingleStack fills the IP family fields defaulting left empty because
// no address was known yet: the service CIDR is single-stack IPv4.
func setSingleStack(svc *corev1.Service) {
	if svc.Spec.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		svc.Spec.IPFamilyPolicy = &p
	}
	if len(svc.Spec.IPFamilies) == 0 {
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}
