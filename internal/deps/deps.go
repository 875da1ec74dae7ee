//go:build tools

// Package deps pins modules during bootstrap.
package deps

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/util/strategicpatch"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kube-openapi/pkg/validation/spec"
	_ "gopkg.in/evanphx/json-patch.v4"
)
