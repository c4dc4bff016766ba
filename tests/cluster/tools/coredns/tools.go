//go:build tools

// Package tools pins github.com/coredns/coredns for the kind node image
// (tests/cluster/build-servers.sh --node).
package tools

import (
	_ "github.com/coredns/coredns"
)
