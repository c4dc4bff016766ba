//go:build tools

// Package tools pins github.com/containerd/containerd/v2 for the kind node image
// (tests/cluster/build-servers.sh --node).
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
