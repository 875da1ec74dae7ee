package pki

import "crypto/tls"

// ServerTLSConfig is the API server's TLS configuration. Client
// certificates are optional at the TLS layer (bearer tokens and anonymous
// health checks must get through) but, when given, must chain to the
// cluster CA; the HTTP layer then decides who the caller is.
func ServerTLSConfig(b *Bundle) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{b.ServingCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    b.CAPool,
		MinVersion:   tls.VersionTLS12,
		// h2 first: client-go multiplexes watches over one HTTP/2 connection.
		NextProtos: []string{"h2", "http/1.1"},
	}
}
