package server

import (
	"net/http"
)

// handleHealthz: the process serves HTTP. It checks nothing else, so a Redis outage never
// restarts pods (which would not fix Redis).
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz: the cache has synced and the store answers a ping within a second. Otherwise
// 503, so the Service stops sending traffic to a replica that could only answer 503
// (SECURITY-CASES 76, 85). The reason is coarse: details go to the log.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.readyCheck(r.Context()); err != nil {
		info := infoFrom(r.Context())
		info.cause = err
		info.outcome = "not_ready"
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
