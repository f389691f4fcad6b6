package browsertest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestNewDrivesAFreshBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("seen"); err == nil {
			_, _ = fmt.Fprint(w, `<!doctype html><title>cookie leaked</title>`)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "seen", Value: "1", MaxAge: 3600})
		_, _ = fmt.Fprint(w, `<!doctype html><title>hello</title><p id="p">browser</p>`)
	}))
	t.Cleanup(srv.Close)
	// Two browsers in a row: the second must not see the first one's cookie, because each has
	// its own new profile.
	for i := range 2 {
		ctx := New(t)
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
			t.Fatal(err)
		}
		title, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil || title != "hello" {
			t.Fatalf("browser %d: title %q, %v", i, title, err)
		}
	}
}

func TestScreenshotWritesAPNG(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, `<!doctype html><title>x</title><h1>picture</h1>`)
	}))
	t.Cleanup(srv.Close)
	ctx := New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a", "b", "shot.png")
	if err := Screenshot(ctx, path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG", path)
	}
}

func TestExecPath(t *testing.T) {
	t.Setenv("CHROME_PATH", "")
	if got := ExecPath(); got != DefaultExecPath {
		t.Errorf("ExecPath() = %q with CHROME_PATH empty, want %q", got, DefaultExecPath)
	}
	t.Setenv("CHROME_PATH", "/opt/chrome/chrome")
	if got := ExecPath(); got != "/opt/chrome/chrome" {
		t.Errorf("ExecPath() = %q, want $CHROME_PATH", got)
	}
}

// recordingTB stands in for the testing.TB that New gets, to see that a missing browser fails
// the test (Fatalf) rather than skipping it.
type recordingTB struct {
	testing.TB
	mu      sync.Mutex
	fatal   string
	skipped bool
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recordingTB) Skip(...any)          { r.skipped = true; runtime.Goexit() }
func (r *recordingTB) Skipf(string, ...any) { r.skipped = true; runtime.Goexit() }
func (r *recordingTB) SkipNow()             { r.skipped = true; runtime.Goexit() }

func TestMissingChromiumFailsTheTest(t *testing.T) {
	t.Setenv("CHROME_PATH", filepath.Join(t.TempDir(), "no-chromium-here"))
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(rec)
	}()
	<-done
	if rec.skipped {
		t.Fatal("a missing browser skipped the test")
	}
	if !strings.Contains(rec.fatal, "no Chromium at") {
		t.Fatalf("a missing browser did not fail the test: %q", rec.fatal)
	}
}
