package promreg_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkey-dev/latchkey/internal/promreg"
)

func TestRegisterSharesTheFirstCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "latchkey_test_total", Help: "test"}
	first, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := promreg.Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second.Inc()
	if first != second {
		t.Fatal("the second registration did not return the first collector")
	}
	// Same name, another shape: an error, never a silent second series.
	if _, err := promreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "latchkey_test_total", Help: "other"})); err == nil {
		t.Fatal("a conflicting collector was accepted")
	}
}
