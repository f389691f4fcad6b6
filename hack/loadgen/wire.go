package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// wireConn is one worker's keep-alive HTTP/1.1 connection, spoken by hand: a request is bytes
// prepared once (or per request for a refresh token), written in one write, and the response
// is read with only what an API answer needs (status, Content-Length or chunked, Connection).
// net/http's client costs the load generator about as much CPU per request as the server
// spends on the whole request, so on the one CPU the load generator has, it, not the server,
// would set the rate; this costs a fraction of it. The workloads that must behave like a
// browser (code, and the set-up of every refresh chain) keep net/http.
type wireConn struct {
	e    *env
	addr string
	c    net.Conn
	br   *bufio.Reader
	body []byte
}

// wireRequest is the bytes of one request to the server.
func wireRequest(method, rawURL, authz string, form []byte) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("loadgen speaks plain HTTP to %s only; put a TLS client in front for https", rawURL)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: latchkey-loadgen\r\n", method, u.RequestURI(), u.Host)
	if authz != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", authz)
	}
	if form != nil {
		fmt.Fprintf(&b, "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n", len(form))
	}
	b.WriteString("\r\n")
	b.Write(form)
	return b.Bytes(), nil
}

func (e *env) newWireConn(rawURL string) (*wireConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &wireConn{e: e, addr: host}, nil
}

func (w *wireConn) close() {
	if w.c != nil {
		_ = w.c.Close()
		w.c, w.br = nil, nil
	}
}

// do sends req and returns the status and the body (valid until the next call). Any error
// closes the connection; the next call dials again.
func (w *wireConn) do(ctx context.Context, req []byte) (int, []byte, error) {
	status, body, keep, err := w.roundTrip(ctx, req)
	if err != nil || !keep {
		w.close()
	}
	return status, body, err
}

func (w *wireConn) roundTrip(ctx context.Context, req []byte) (status int, body []byte, keep bool, err error) {
	if w.c == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", w.addr)
		if err != nil {
			return 0, nil, false, err
		}
		w.e.dials.Add(1)
		w.c, w.br = c, bufio.NewReaderSize(c, 16<<10)
	}
	deadline := time.Now().Add(w.e.cfg.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := w.c.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	if _, err := w.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	line, err := w.line()
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	keep = line[7] == '1'
	for {
		h, err := w.line()
		if err != nil {
			return 0, nil, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	w.body = w.body[:0]
	switch {
	case chunked:
		err = w.readChunked()
	case length >= 0:
		if length > maxBody {
			return 0, nil, false, errors.New("response too large")
		}
		w.body = append(w.body, make([]byte, length)...)
		_, err = io.ReadFull(w.br, w.body)
	default:
		// No length: the body runs to the end of the connection.
		keep = false
		w.body, err = io.ReadAll(io.LimitReader(w.br, maxBody))
	}
	if err != nil {
		return 0, nil, false, err
	}
	return status, w.body, keep, nil
}

// line reads one CRLF-terminated line, without the CRLF.
func (w *wireConn) line() ([]byte, error) {
	l, err := w.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(l, "\r\n"), nil
}

// readChunked reads a chunked body (RFC 9112 §7.1) into w.body; extensions and trailers are
// skipped.
func (w *wireConn) readChunked() error {
	for {
		l, err := w.line()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 32)
		if err != nil || n < 0 || len(w.body)+int(n) > maxBody {
			return fmt.Errorf("bad chunk size %q", l)
		}
		if n == 0 {
			for {
				t, err := w.line()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		start := len(w.body)
		w.body = append(w.body, make([]byte, n)...)
		if _, err := io.ReadFull(w.br, w.body[start:]); err != nil {
			return err
		}
		if crlf, err := w.line(); err != nil || len(crlf) != 0 {
			return errors.New("bad chunk terminator")
		}
	}
}
