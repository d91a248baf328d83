// Package monitoring ships what a platform team needs to watch modelserve
// with Prometheus and Grafana: recording and alerting rules (with their
// promtool unit tests) and a dashboard, over the metrics /metrics exports
// (README, Metrics). The files are embedded so that tools can render them
// (a PrometheusRule, a dashboard ConfigMap) without looking for them on
// disk.
package monitoring

import (
	"bytes"
	_ "embed"
)

var (
	//go:embed prometheus-rules.yml
	rules []byte
	//go:embed grafana-dashboard.json
	dashboard []byte
)

// Rules is the Prometheus rule file: recording rules, then alerts.
func Rules() []byte { return bytes.Clone(rules) }

// Dashboard is the Grafana dashboard, its data source and models chosen
// by variables.
func Dashboard() []byte { return bytes.Clone(dashboard) }
