package server

import "net/http"

// caCertsHandler serves the cluster CA in PEM at /cacerts, to anyone: a
// joining agent cannot verify the server before it has the CA, so it
// fetches it unverified and checks it against the hash its join token
// pins. The CA certificate is public; only its key is secret.
func caCertsHandler(caPEM []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(caPEM)
	})
}
