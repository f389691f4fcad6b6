package server

import (
	"context"
	"log/slog"

	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/server/httpx"
)

// emit writes an audit record (package audit) with the request id of ctx. Callers pass
// identifiers only: never a token, code, secret or password.
func (s *Server) emit(ctx context.Context, name, clientID, subject, family string, attrs ...slog.Attr) {
	s.audit.Emit(ctx, audit.Event{
		Name: name, ClientID: clientID, Subject: subject, Family: family,
		RequestID: httpx.RequestID(ctx), Attrs: attrs,
	})
}
