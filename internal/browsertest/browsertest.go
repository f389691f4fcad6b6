// Package browsertest runs a real headless Chromium, driven by chromedp, for tests of the pages a
// person sees (the login and consent pages). A browser enforces what a unit test can only
// assert: X-Frame-Options and CSP frame-ancestors (RFC 9700 §4.16), CSP form-action on the
// redirect after a form post, and 303 handling after a POST (RFC 9700 §4.12).
//
// A missing Chromium fails the test: it is never skipped, because a skipped security test looks
// like a passing one. `make test` installs Debian's chromium package when it is missing.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// DefaultExecPath is where Debian's chromium package puts the browser. $CHROME_PATH, when set
// and not empty, overrides it.
const DefaultExecPath = "/usr/bin/chromium"

// Timeout bounds one test's use of the browser, start-up included. It is generous because two
// shared cores run many test binaries at once; it is a hang guard, not a performance assertion.
const Timeout = 90 * time.Second

// ViewportWidth and ViewportHeight are the size of the browser window, chosen so that a
// screenshot of a centred card reads well in the README.
const (
	ViewportWidth  = 720
	ViewportHeight = 760
)

// ExecPath returns the browser to run: $CHROME_PATH when it is set, else DefaultExecPath.
func ExecPath() string {
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	return DefaultExecPath
}

// allocatorOptions are the flags Chromium runs with. The networking flags matter: the test
// machines have no internet, and without them Chromium spends seconds on each start trying to
// reach Google's update, sync and QUIC endpoints.
func allocatorOptions(execPath string, output *syncBuffer) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root in containers
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true), // /dev/shm is tiny in containers
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.WindowSize(ViewportWidth, ViewportHeight),
		chromedp.CombinedOutput(output),
		// No UserDataDir option: chromedp then makes a fresh temporary profile for this browser
		// and removes it when the allocator is cancelled, so no cookie or cache leaks between
		// tests.
	}
}

// New starts a fresh headless Chromium (a new process with a new, empty profile) and returns a
// chromedp context for one tab in it, bounded by Timeout. The browser, its profile and the
// context end when the test ends. A missing or broken browser fails the test.
func New(t testing.TB) context.Context {
	t.Helper()
	execPath := ExecPath()
	if _, err := exec.LookPath(execPath); err != nil {
		t.Fatalf("browsertest: no Chromium at %s (%v): install Debian's chromium package "+
			"(make test-deps does) or set CHROME_PATH", execPath, err)
	}

	output := &syncBuffer{}
	logs := &testLogger{t: t}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		allocatorOptions(execPath, output)...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logs.Logf))
	// The first Run binds the browser's life to its context, so the browser starts under the
	// test's deadline: a hang ends with the test, never after it.
	ctx, cancelTimeout := context.WithTimeout(browserCtx, Timeout)
	t.Cleanup(func() {
		logs.stop()
		cancelTimeout()
		cancelBrowser()
		cancelAlloc() // waits for the process to exit and removes the profile
		if t.Failed() {
			t.Logf("browsertest: Chromium output:\n%s", output.tail(8<<10))
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v\nChromium output:\n%s", execPath, err, output.tail(8<<10))
	}
	return ctx
}

// Screenshot saves a PNG of the whole page of ctx's tab to path, creating its directory.
func Screenshot(ctx context.Context, path string) error {
	// Quality 100 makes chromedp ask for PNG, which is lossless and what the README embeds.
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}

// UpdateScreenshots reports whether the committed screenshots should be rewritten: when
// UPDATE_SCREENSHOTS=1 is set.
func UpdateScreenshots() bool {
	return os.Getenv("UPDATE_SCREENSHOTS") == "1"
}

// RepoRoot returns the module root (the directory holding go.mod) above the test's working
// directory, so tests can write docs/images wherever the package lives.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("browsertest: %v", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("browsertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// testLogger forwards chromedp's error log to the test until the test's cleanup begins. A late
// message from the browser's goroutines must not reach t.Logf after the test ended, which
// panics; the mutex makes the check and the call one step.
type testLogger struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLogger) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *testLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}

// syncBuffer collects the browser's output, which chromedp writes from its own goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep memory bounded: Chromium can be chatty in a long test.
	if b.buf.Len() > 1<<20 {
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

// tail returns the last n bytes written.
func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}

// FrameURL waits until the page of ctx has an iframe loaded from src (a URL prefix) and returns
// the URL of the document that iframe shows: src itself when the page rendered, and Chromium's
// error page (ErrorPageURL) when the browser refused to show it, as it does for a page that
// forbids framing with X-Frame-Options or CSP frame-ancestors. It looks in both places Chromium
// keeps frames: a cross-site iframe is a target of its own, a same-site one a child in the
// page's frame tree.
func FrameURL(ctx context.Context, src string) (string, error) {
	for {
		href, found, err := findFrame(ctx, src)
		if err != nil || found {
			return href, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("frame url: no iframe from %s: %w", src, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ErrorPageURL is the URL of the document Chromium shows in place of a page it refused.
const ErrorPageURL = "chrome-error://chromewebdata/"

func findFrame(ctx context.Context, src string) (string, bool, error) {
	infos, err := chromedp.Targets(ctx)
	if err != nil {
		return "", false, fmt.Errorf("frame url: %w", err)
	}
	for _, info := range infos {
		if info.Type != "iframe" || !strings.HasPrefix(info.URL, src) {
			continue
		}
		// Detach on cancel: cancelling a context that owns a target would close it.
		fctx, cancel := chromedp.NewContext(ctx, chromedp.WithTargetID(info.TargetID), chromedp.WithDetachOnCancel())
		href, err := chromedp.Run(fctx, chromedp.Evaluate[string](`location.href`))
		cancel()
		if err != nil {
			return "", false, fmt.Errorf("frame url: read the iframe's location: %w", err)
		}
		return href, true, nil
	}
	tree, err := chromedp.Call(ctx, page.GetFrameTree, cdp.Empty{})
	if err != nil {
		return "", false, fmt.Errorf("frame url: %w", err)
	}
	for _, child := range tree.FrameTree.ChildFrames {
		f := child.Frame
		if strings.HasPrefix(f.URL, src) || strings.HasPrefix(f.UnreachableURL, src) {
			return f.URL, true, nil
		}
	}
	return "", false, nil
}
