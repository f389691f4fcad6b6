package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The hand-written client reads Content-Length and chunked bodies, keeps the connection across
// requests, and dials again after Connection: close.
func TestWireConn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Length", "5")
			_, _ = w.Write([]byte("hello"))
		case "/chunked":
			_, _ = w.Write([]byte("part one, "))
			w.(http.Flusher).Flush() // forces chunked encoding
			_, _ = w.Write([]byte("part two"))
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusTeapot)
			_, _ = w.Write(body)
		}
	}))
	defer srv.Close()
	e := &env{cfg: config{timeout: 5 * time.Second}}
	w, err := e.newWireConn(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		method, path string
		form         []byte
		status       int
		body         string
		dials        int64
	}{
		{"GET", "/len", nil, 200, "hello", 1},
		{"GET", "/chunked", nil, 200, "part one, part two", 1},
		{"POST", "/close", []byte("a=b"), 418, "a=b", 1},
		{"GET", "/len", nil, 200, "hello", 2}, // the server closed: a new connection
		{"GET", "/len", nil, 200, "hello", 2},
	} {
		req, err := wireRequest(tc.method, srv.URL+tc.path, "Basic eDp5", tc.form)
		if err != nil {
			t.Fatal(err)
		}
		status, body, err := w.do(ctx, req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		if status != tc.status || string(body) != tc.body || e.dials.Load() != tc.dials {
			t.Fatalf("%s %s: %d %q after %d dials, want %d %q after %d", tc.method, tc.path, status, body,
				e.dials.Load(), tc.status, tc.body, tc.dials)
		}
	}
}

func TestWireRequestRefusesHTTPS(t *testing.T) {
	if _, err := wireRequest("GET", "https://example.test/token", "", nil); err == nil {
		t.Fatal("https accepted")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkSignAccessToken/ES256/compact-2   	   29143	     51920 ns/op	    6608 B/op	      61 allocs/op
BenchmarkSignAccessToken/ES256/compact-2   	   29143	     40000 ns/op	    6608 B/op	      61 allocs/op
BenchmarkSignAccessToken/ES256/compact-2   	   29143	     45000 ns/op	    6608 B/op	      61 allocs/op
BenchmarkRecordAccessTokenParallel/batched-2  	  100	  9000 ns/op	  12000 cpu-ns/op	  0.25 trips/op	  300 B/op	  9 allocs/op
PASS`
	got := parseGoBench(out)
	if m := got["BenchmarkSignAccessToken/ES256/compact"]; m["ns/op"] != 45000 || m["allocs/op"] != 61 {
		t.Fatalf("compact: %v", m)
	}
	if m := got["BenchmarkRecordAccessTokenParallel/batched"]; m["cpu-ns/op"] != 12000 || m["trips/op"] != 0.25 {
		t.Fatalf("batched: %v", m)
	}
}

// The chart is well-formed XML with every path's title, escaped.
func TestChart(t *testing.T) {
	rows := []Row{
		{Title: "client_credentials <token> & more", RPS: 12000, Limit: "raw-sign", LimitTitle: "raw sign", LimitRPS: 30000, Ratio: 0.4, Target: 0.6, Concurrency: 16},
		{Title: "JWKS document", RPS: 25000, Concurrency: 16},
	}
	svg := chart(rows)
	d := xml.NewDecoder(bytes.NewReader(svg))
	var text strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, svg)
		}
		if c, ok := tok.(xml.CharData); ok {
			text.Write(c)
		}
	}
	for _, want := range []string{"client_credentials <token> & more", "JWKS document", "12,000/s", "30,000/s raw sign"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("chart lacks %q", want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if percentile(d, 50) != 50 || percentile(d, 99) != 99 || percentile(d, 100) != 100 || percentile(d[:1], 99) != 1 {
		t.Fatal("percentile")
	}
}
