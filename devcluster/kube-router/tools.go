//go:build tools

// Package tools records the command this module builds (kube-router, the dev cluster's
// NetworkPolicy enforcer), so that `go mod tidy` keeps its dependencies.
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
