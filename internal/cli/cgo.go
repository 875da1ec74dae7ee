//go:build cgo

package cli

// cgoBuild reports a binary built with cgo. Linked with package plugin
// (kustomize imports it), such a binary keeps every method and exports
// every symbol, so a running server maps ~35 MB more of it than the static
// build hack/build.sh makes.
const cgoBuild = true
