//go:build tools

// Package tools pins sigs.k8s.io/cri-tools for the kind node image
// (tests/cluster/build-servers.sh --node).
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
