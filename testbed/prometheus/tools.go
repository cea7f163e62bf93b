//go:build tools

// Prometheus for the test bed, built with only the Kubernetes service discovery (see ../README.md).
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
