package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
)

// Files of a server's etcd credentials, under DataDir/tls/etcd. They
// exist only on servers of a cluster of several (--cluster-init or
// joined): a single server keeps its etcd on plain HTTP on the loopback.
const (
	// EtcdTLSDirName is the subdirectory of TLSDirName holding them.
	EtcdTLSDirName = "etcd"
	// EtcdMemberCertFile and EtcdMemberKeyFile are the member's
	// certificate: it serves the peer and client URLs and authenticates
	// the member to its peers.
	EtcdMemberCertFile = "member.crt"
	EtcdMemberKeyFile  = "member.key"
	// EtcdClientCertFile and EtcdClientKeyFile are a client certificate
	// for tools on the server's host (`skiff etcd-snapshot`).
	EtcdClientCertFile = "client.crt"
	EtcdClientKeyFile  = "client.key"
)

// Common names etcd accepts. The cluster CA also signs node and user
// certificates, so trusting the CA alone would let any node talk raft to
// the members or read every key; etcd is told to accept these names only,
// which the CSR signer never issues.
const (
	// EtcdMemberCN is every member's certificate's common name.
	EtcdMemberCN = "skiff-etcd-member"
	// EtcdClientCN is the host tools' client certificate's common name.
	EtcdClientCN = "skiff-etcd-client"
)

// EtcdTLS are the paths of one server's etcd credentials.
type EtcdTLS struct {
	// CAFile is the cluster CA, which every member and client chains to.
	CAFile string
	// MemberCert and MemberKey are the member's certificate and key.
	MemberCert, MemberKey string
	// ClientCert and ClientKey are the host tools' certificate and key.
	ClientCert, ClientKey string
}

// EtcdTLSPaths says where the etcd credentials of the server with data
// directory dataDir live, whether or not they exist.
func EtcdTLSPaths(dataDir string) EtcdTLS {
	dir := filepath.Join(dataDir, TLSDirName, EtcdTLSDirName)
	return EtcdTLS{
		CAFile:     filepath.Join(dataDir, TLSDirName, CACertFile),
		MemberCert: filepath.Join(dir, EtcdMemberCertFile),
		MemberKey:  filepath.Join(dir, EtcdMemberKeyFile),
		ClientCert: filepath.Join(dir, EtcdClientCertFile),
		ClientKey:  filepath.Join(dir, EtcdClientKeyFile),
	}
}

// HasEtcdTLS reports whether the server with data directory dataDir has
// been a member of a cluster of several: its etcd then speaks TLS.
func HasEtcdTLS(dataDir string) bool {
	_, err := os.Stat(EtcdTLSPaths(dataDir).MemberCert)
	return err == nil
}

// EnsureEtcdTLS makes sure the server has etcd credentials signed by the
// cluster CA, reusing stored ones that still fit. The member certificate
// covers the loopback and localhost (the local client URL) and sans (the
// advertise address its peers dial, the host name); a change of sans
// reissues it.
func (b *Bundle) EnsureEtcdTLS(sans []string, log *slog.Logger) (EtcdTLS, error) {
	if b.dataDir == "" {
		return EtcdTLS{}, errors.New("pki: etcd credentials need a bundle loaded by Ensure")
	}
	if log == nil {
		log = slog.Default()
	}
	paths := EtcdTLSPaths(b.dataDir)
	if err := os.MkdirAll(filepath.Dir(paths.MemberCert), 0o700); err != nil {
		return EtcdTLS{}, fmt.Errorf("pki: etcd credentials directory: %w", err)
	}
	dns := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, name := range sans {
		ip, d, err := parseSAN(name)
		if err != nil {
			return EtcdTLS{}, err
		}
		ips, dns = appendSAN(ips, dns, ip, d)
	}
	want := newSANSet(dns, ips)
	now := b.now()

	member := leafTemplate{cn: EtcdMemberCN, usage: x509.ExtKeyUsageServerAuth,
		also: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, dns: want.dns, ips: want.ips}
	_, leaf, reason := loadLeaf(b, paths.MemberCert, paths.MemberKey, x509.ExtKeyUsageServerAuth, now)
	if reason == "" && !leafFits(leaf, member) {
		reason = "subject or usage changed"
	}
	if reason == "" && !sansOf(leaf).equal(want) {
		reason = "SANs changed"
	}
	if reason != "" {
		if err := b.issueTo(paths.MemberCert, paths.MemberKey, member); err != nil {
			return EtcdTLS{}, err
		}
		log.Info("issued etcd member certificate", "reason", reason, "dnsNames", want.dns, "ips", want.ipStrings())
	}

	client := leafTemplate{cn: EtcdClientCN, usage: x509.ExtKeyUsageClientAuth}
	_, leaf, reason = loadLeaf(b, paths.ClientCert, paths.ClientKey, x509.ExtKeyUsageClientAuth, now)
	if reason == "" && !leafFits(leaf, client) {
		reason = "subject changed"
	}
	if reason != "" {
		if err := b.issueTo(paths.ClientCert, paths.ClientKey, client); err != nil {
			return EtcdTLS{}, err
		}
		log.Info("issued etcd client certificate", "reason", reason)
	}
	return paths, nil
}

// leafFits reports whether a stored leaf has t's common name and every
// usage t asks for.
func leafFits(leaf *x509.Certificate, t leafTemplate) bool {
	if leaf.Subject.CommonName != t.cn {
		return false
	}
	for _, u := range append([]x509.ExtKeyUsage{t.usage}, t.also...) {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return false
		}
	}
	return true
}

// issueTo issues a leaf from t and stores it.
func (b *Bundle) issueTo(certPath, keyPath string, t leafTemplate) error {
	certPEM, keyPEM, err := b.issue(t)
	if err != nil {
		return err
	}
	return writeKeyPair(certPath, keyPath, certPEM, keyPEM)
}
