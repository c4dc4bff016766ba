//go:build tools

// Package tools pins github.com/versity/versitygw/cmd/versitygw for the Ballast local test control plane.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
