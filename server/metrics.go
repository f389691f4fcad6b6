package server

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkey-dev/latchkey/internal/promreg"
)

// metrics are the server's Prometheus collectors. Label values come from fixed sets (endpoint
// names, registered grants or "unsupported", OAuth error codes), never from request input.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	issued   *prometheus.CounterVec
	revoked  *prometheus.CounterVec

	// children caches the series of each label set, so a request costs a map lookup instead
	// of hashing and validating its label values in every WithLabelValues. The label sets are
	// few and fixed (see above), so the map stays small.
	mu       sync.RWMutex
	children map[requestLabels]requestSeries
	issuedBy map[string]prometheus.Counter
}

type requestLabels struct{ endpoint, grant, outcome string }

type requestSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "latchkey", Subsystem: "server", Name: "requests_total",
			Help: "HTTP requests by endpoint, grant type and outcome (ok or the OAuth error code).",
		}, []string{"endpoint", "grant", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "latchkey", Subsystem: "server", Name: "request_duration_seconds",
			Help:    "HTTP request latency by endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "latchkey", Subsystem: "server", Name: "tokens_issued_total",
			Help: "Access tokens issued, by grant type.",
		}, []string{"grant"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "latchkey", Subsystem: "server", Name: "tokens_revoked_total",
			Help: "Tokens revoked at the revocation endpoint, by token type.",
		}, []string{"token_type"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = promreg.Register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.issued, err = promreg.Register(reg, m.issued); err != nil {
		return nil, err
	}
	if m.revoked, err = promreg.Register(reg, m.revoked); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observe(endpoint, grant, outcome string, elapsed time.Duration) {
	k := requestLabels{endpoint, grant, outcome}
	m.mu.RLock()
	series, ok := m.children[k]
	m.mu.RUnlock()
	if !ok {
		series = requestSeries{
			requests: m.requests.WithLabelValues(endpoint, grant, outcome),
			duration: m.duration.WithLabelValues(endpoint),
		}
		m.mu.Lock()
		if m.children == nil {
			m.children = map[requestLabels]requestSeries{}
		}
		m.children[k] = series
		m.mu.Unlock()
	}
	series.requests.Inc()
	series.duration.Observe(elapsed.Seconds())
}

// tokenIssued counts a token issued by grant.
func (m *metrics) tokenIssued(grant string) {
	m.mu.RLock()
	c, ok := m.issuedBy[grant]
	m.mu.RUnlock()
	if !ok {
		c = m.issued.WithLabelValues(grant)
		m.mu.Lock()
		if m.issuedBy == nil {
			m.issuedBy = map[string]prometheus.Counter{}
		}
		m.issuedBy[grant] = c
		m.mu.Unlock()
	}
	c.Inc()
}
