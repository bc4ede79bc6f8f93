// Package monitoring holds no code: its test checks the Grafana dashboard
// (dashboard.json) and the Prometheus alerting rules (alerts.yaml, with
// their promtool unit tests in alerts_test.yaml) of this directory against
// the metrics roster-sidecar exports. `make check-deploy` runs it together
// with promtool.
package monitoring
