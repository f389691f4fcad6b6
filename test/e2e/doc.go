// Package e2e runs the whole Latchkey system the way a cluster runs it, and breaks it.
//
// Each test builds a "system": the Helm chart rendered for its own release namespace (so the
// binary gets exactly the arguments, environment and RBAC the chart's Deployment would give it),
// a real redis-server, and one or more copies of the latchkey binary running out of cluster
// against a shared envtest API server. The binary authenticates as the chart's ServiceAccount
// (a client certificate for system:serviceaccount:<ns>:<sa>), so the chart's least-privilege
// RBAC is exercised for real, and it reaches the API server through a TCP proxy the test can
// cut, which is how API server outages are staged.
//
// What the tests prove is listed on each Test function, with the SECURITY-CASES numbers they
// cover. The package holds only tests; this file exists for its documentation.
package e2e
