package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchkey-dev/latchkey/internal/audit"
)

// Names are unique snake_case identifiers (the style of the names SECURITY-CASES uses).
func TestNames(t *testing.T) {
	re := regexp.MustCompile(`^[a-z]+(_[a-z]+)+$`)
	seen := map[string]bool{}
	for _, n := range audit.Names {
		if !re.MatchString(n) || seen[n] {
			t.Errorf("event name %q is not unique snake_case", n)
		}
		seen[n] = true
	}
}

func TestEmit(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	l, err := audit.New(slog.NewJSONHandler(&buf, nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second Logger on the same registry shares the counters.
	l2, err := audit.New(slog.NewJSONHandler(&buf, nil), reg)
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(context.Background(), audit.Event{Name: audit.LoginFailed, ClientID: "spa", Subject: "alice",
		RequestID: "r1", Attrs: []slog.Attr{slog.String("reason", "invalid_credentials")}})
	l2.Emit(context.Background(), audit.Event{Name: audit.LoginFailed, ClientID: "spa"})
	var rec map[string]any
	if err := json.Unmarshal(bytes.SplitN(buf.Bytes(), []byte("\n"), 2)[0], &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "audit" || rec["event"] != "login_failed" || rec["client_id"] != "spa" || rec["subject"] != "alice" ||
		rec["request_id"] != "r1" || rec["reason"] != "invalid_credentials" {
		t.Fatalf("record %v", rec)
	}
	if _, ok := rec["family"]; ok {
		t.Fatalf("empty family written: %v", rec)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "latchkey_server_logins_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "failed" {
					got = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got != 2 {
		t.Fatalf("logins_total{result=failed} = %v, want 2", got)
	}
	var nilLogger *audit.Logger
	nilLogger.Emit(context.Background(), audit.Event{Name: audit.TokenIssued}) // discards, no panic
}
