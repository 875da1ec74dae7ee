//go:build !cgo

package cli

// cgoBuild reports a binary built with cgo; see cgo.go.
const cgoBuild = false
