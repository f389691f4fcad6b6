package controllers

import (
	"sync"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/latchkey-dev/latchkey/internal/audit"
)

// defaultAudit is the audit stream of reconcilers built without one: controller-runtime's log
// (named "audit") and its metrics registry, which the manager serves. Built once, because the
// counters can be registered once per registry.
var defaultAudit = sync.OnceValue(func() *audit.Logger {
	l, err := audit.FromLogr(ctrl.Log, ctrlmetrics.Registry)
	if err != nil {
		// Only a clash with a foreign collector of the same name; the records still matter.
		l, _ = audit.FromLogr(ctrl.Log, nil)
	}
	return l
})

// auditor is l, or the default stream when l is nil.
func auditor(l *audit.Logger) *audit.Logger {
	if l != nil {
		return l
	}
	return defaultAudit()
}
