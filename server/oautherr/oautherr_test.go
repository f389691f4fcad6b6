package oautherr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/latchkey-dev/latchkey/server/store"
)

func TestStatusMapping(t *testing.T) {
	for code, want := range map[string]int{
		CodeInvalidClient: 401, CodeServerError: 500, CodeTemporarilyUnavailable: 503,
		CodeInvalidRequest: 400, CodeInvalidGrant: 400, CodeUnauthorizedClient: 400,
		CodeUnsupportedGrantType: 400, CodeInvalidScope: 400, CodeUnsupportedTokenType: 400,
	} {
		if got := New(code, "").Status(); got != want {
			t.Errorf("%s: %d, want %d", code, got, want)
		}
	}
}

func TestFrom(t *testing.T) {
	ic := InvalidClient("x")
	if From(fmt.Errorf("wrapped: %w", ic)) != ic {
		t.Fatal("an *Error in the chain is kept")
	}
	if got := From(fmt.Errorf("op: %w", errors.Join(store.ErrUnavailable, errors.New("dial")))); got.Code != CodeTemporarilyUnavailable {
		t.Fatalf("store outage: %s", got.Code)
	}
	if got := From(context.DeadlineExceeded); got.Code != CodeTemporarilyUnavailable {
		t.Fatalf("deadline: %s", got.Code)
	}
	boom := errors.New("WRONGTYPE internal detail")
	got := From(boom)
	if got.Code != CodeServerError || got.Description != "internal error" || !errors.Is(got, boom) {
		t.Fatalf("other: %+v", got)
	}
	if From(nil) != nil {
		t.Fatal("From(nil)")
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	sent := Write(rec, InvalidClient("bad \"quote\" \\ and\nnewline").WithCause(errors.New("secret cause")), "https://issuer")
	if sent.Code != CodeInvalidClient {
		t.Fatalf("Write returned %+v; want the invalid_client it sent", sent)
	}
	if rec.Code != http.StatusUnauthorized ||
		rec.Body.String() != `{"error":"invalid_client","error_description":"bad ?quote? ? and?newline"}`+"\n" ||
		rec.Header().Get("WWW-Authenticate") != `Basic realm="https://issuer", charset="UTF-8"` ||
		rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Pragma") != "no-cache" {
		t.Fatalf("%d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rec = httptest.NewRecorder()
	if sent := Write(rec, errors.New("secret cause"), "r"); sent.Code != CodeServerError {
		t.Fatalf("Write returned %+v; want the server_error it sent", sent)
	}
	if rec.Code != 500 || rec.Body.String() != `{"error":"server_error","error_description":"internal error"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}
