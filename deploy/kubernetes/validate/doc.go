// Package validate checks the Kubernetes manifests in deploy/kubernetes
// without a cluster: every file is decoded strictly into the Kubernetes API
// types of k8s.io/api (an unknown or misspelt field, or a value of the wrong
// type, fails), names and labels are checked with apimachinery's validation
// functions, and the cross references that a cluster would only report at
// run time (selectors, ports, probe paths, ConfigMap and Secret keys, the
// security context) are checked by the test.
//
// It is a module of its own so that the Kubernetes API modules stay out of
// roster-sidecar's dependencies. Run it with `make check-deploy` or
//
//	cd deploy/kubernetes/validate && go test ./...
package validate
