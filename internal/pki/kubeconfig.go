package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigSpec is what a kubeconfig file needs: where the server is, how
// to trust it, and one credential (a client certificate or a bearer token).
type KubeconfigSpec struct {
	// ServerURL is the API server, e.g. https://127.0.0.1:6443.
	ServerURL string
	// CAPEM is the cluster CA the server's certificate must chain to.
	CAPEM []byte
	// CertPEM and KeyPEM are a client certificate and its key.
	CertPEM, KeyPEM []byte
	// Token is a bearer token, used when no client certificate is given.
	Token string
	// Cluster, User and Context name the entries; defaults "skiff",
	// "admin" and "skiff".
	Cluster, User, Context string
}

// WriteKubeconfig writes a single-context kubeconfig to path with mode 0600
// (it holds a credential), creating the parent directory if needed.
func WriteKubeconfig(path string, spec KubeconfigSpec) error {
	data, err := Kubeconfig(spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("pki: kubeconfig directory: %w", err)
	}
	return writeFileAtomic(path, data, 0o600)
}

// Kubeconfig renders spec as kubeconfig YAML, with all credentials embedded
// so the file is self-contained and can be copied to another machine.
func Kubeconfig(spec KubeconfigSpec) ([]byte, error) {
	if spec.ServerURL == "" {
		return nil, errors.New("pki: kubeconfig needs a server URL")
	}
	if len(spec.CertPEM) == 0 && spec.Token == "" {
		return nil, errors.New("pki: kubeconfig needs a client certificate or a token")
	}
	if (len(spec.CertPEM) == 0) != (len(spec.KeyPEM) == 0) {
		return nil, errors.New("pki: kubeconfig client certificate and key go together")
	}
	cluster, user, context := spec.Cluster, spec.User, spec.Context
	if cluster == "" {
		cluster = "skiff"
	}
	if user == "" {
		user = AdminUser
	}
	if context == "" {
		context = "skiff"
	}

	cfg := clientcmdapi.NewConfig()
	c := clientcmdapi.NewCluster()
	c.Server = spec.ServerURL
	c.CertificateAuthorityData = spec.CAPEM
	cfg.Clusters[cluster] = c

	a := clientcmdapi.NewAuthInfo()
	a.ClientCertificateData = spec.CertPEM
	a.ClientKeyData = spec.KeyPEM
	a.Token = spec.Token
	cfg.AuthInfos[user] = a

	ctx := clientcmdapi.NewContext()
	ctx.Cluster = cluster
	ctx.AuthInfo = user
	cfg.Contexts[context] = ctx
	cfg.CurrentContext = context

	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("pki: encode kubeconfig: %w", err)
	}
	return data, nil
}
