//go:build tools

// Package tools pins etcd and etcdctl for the Ballast local test control
// plane (tests/cluster/build-servers.sh). Both module roots are main packages.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
