// Package validate checks the Kubernetes manifests in deploy/kubernetes
// without a cluster: every file is decoded strictly into the Kubernetes API
// types of k8s.io/api (an unknown or misspelt field, or a value of the wrong
// type, fails), names and labels are checked with apimachinery's validation
// functions, and the cross references that a cluster would only report at
// run time (selectors, ports, probe paths, ConfigMap and Secret keys, the
// security context, the leader election Lease against the Role and the
// RoleBinding, a rolling update that can progress with one ready pod) are
// checked by the test.
//
// It is a module of its own so that it keeps its own versions of the
// Kubernetes API modules (roster-sidecar itself uses client-go for leader
// election). Run it with `make check-deploy` or
//
//	cd deploy/kubernetes/validate && go test ./...
package validate
