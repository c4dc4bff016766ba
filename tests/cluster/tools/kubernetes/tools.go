//go:build tools

// Package tools pins the Kubernetes binaries built for the Ballast local
// test control plane (tests/cluster/build-servers.sh) and, with kubelet,
// kubeadm and kube-proxy, for the kind node image (kind-e2e/).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
