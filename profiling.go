//go:build pprof

// This file is compiled only with `-tags pprof` (hack/bench.sh --profile builds such a binary):
// release builds never serve profiles. With LATCHKEY_PPROF_ADDR set (a loopback address), the
// binary serves net/http/pprof there, so the server can be profiled under load as it really
// runs (`go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10`).

package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("LATCHKEY_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		// DefaultServeMux holds only the pprof handlers: the token server has its own mux.
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintf(os.Stderr, "latchkey: pprof: %v\n", err)
		}
	}()
}
