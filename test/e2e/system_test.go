package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/latchkey-dev/latchkey/internal/redistest"
	"github.com/latchkey-dev/latchkey/test/chart"
)

// system is one installation of Latchkey, as `helm install` would make it in a real cluster:
// the chart rendered for its own release and namespace, the objects the chart creates (RBAC,
// ServiceAccount, the Redis URL Secret, the default SigningKey), a redis-server, and the client
// namespaces it watches. Binaries (replicas) are started on it with start.
type system struct {
	t *testing.T
	// release is the Helm release name; ns the release namespace, where the SigningKeys, key
	// Secrets, JWKS ConfigMaps and the leader Lease live.
	release, ns string
	// clientNS are the namespaces in --watch-namespaces, where the test's OAuthClients live.
	clientNS []string
	// issuer is http://127.0.0.1:<issuerPort>; the first binary started listens there.
	issuer     string
	issuerPort int
	redis      *redistest.Server
	mgr        *chart.Manager
	// user is the chart's ServiceAccount, as the API server will authenticate the binary.
	user *envtest.AuthenticatedUser
	// proxy stands between every binary of the system and the API server, so a test can cut it.
	proxy *apiProxy
	leaks *leakGuard
	http  *http.Client

	mu       sync.Mutex
	binaries []*binary
}

// systemOptions are the chart values a test changes; everything else is the chart's default.
type systemOptions struct {
	// clientNamespaces is how many watched namespaces to create (default 1).
	clientNamespaces int
	// signingKey are values of the chart's signingKey section (prePublish, retention, ...).
	signingKey map[string]any
	// values are other top-level chart values.
	values map[string]any
}

// addUserMu serialises envtest's AddUser: its tiny CA hands out serial numbers without a lock.
var addUserMu sync.Mutex

// newSystem renders the chart and creates what it would create. Nothing is cleaned up from the
// API server afterwards: envtest has no namespace or garbage collector, and every test uses its
// own names.
func newSystem(t *testing.T, o systemOptions) *system {
	t.Helper()
	ctx := t.Context()
	release := "lk" + randomHex(t, 4)
	s := &system{
		t:       t,
		release: release,
		ns:      release,
		leaks:   &leakGuard{values: map[string]string{}},
		http:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if o.clientNamespaces == 0 {
		o.clientNamespaces = 1
	}
	for i := range o.clientNamespaces {
		s.clientNS = append(s.clientNS, fmt.Sprintf("%s-c%d", release, i+1))
	}
	s.issuerPort = redistest.FreePort(t)
	s.issuer = "http://127.0.0.1:" + strconv.Itoa(s.issuerPort)
	s.redis = redistest.Start(t)

	values := map[string]any{
		"issuer":          s.issuer,
		"redis":           map[string]any{"enabled": false, "url": s.redis.URL()},
		"watchNamespaces": s.clientNS,
		// Debug logs widen the check that no secret or token is ever logged.
		"logLevel": "debug",
	}
	if o.signingKey != nil {
		values["signingKey"] = o.signingKey
	}
	for k, v := range o.values {
		values[k] = v
	}
	m, err := chart.RenderManager(ctx, chart.Options{Release: release, Namespace: s.ns, Values: values})
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	s.mgr = m

	for _, ns := range append([]string{s.ns}, s.clientNS...) {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	// What `helm install` creates that matters out of cluster. The Deployment, Services, PDB and
	// test Pod need a kubelet; the binary below stands in for the Deployment's pods.
	apply := map[string]bool{
		"ServiceAccount": true, "Secret": true, "ConfigMap": true,
		"ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true,
		"SigningKey": true,
	}
	var sa string
	for _, obj := range m.Objects {
		if !apply[obj.GetKind()] {
			continue
		}
		if obj.GetKind() == "ServiceAccount" {
			sa = obj.GetName()
		}
		if err := admin.Create(ctx, obj.DeepCopy()); err != nil {
			t.Fatalf("create %s %s/%s from the chart: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	if sa == "" {
		t.Fatal("the chart rendered no ServiceAccount")
	}
	// The binary authenticates as the chart's ServiceAccount (what a pod's projected token would
	// say), so it has exactly the chart's RBAC and nothing more.
	addUserMu.Lock()
	s.user, err = env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + s.ns + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + s.ns},
	}, nil)
	addUserMu.Unlock()
	if err != nil {
		t.Fatalf("add the ServiceAccount user: %v", err)
	}
	s.proxy = newAPIProxy(t, env.Config.Host)

	t.Cleanup(s.cleanup)
	return s
}

// cleanup stops every binary, checks that none of them printed a secret, and shows their
// output when the test failed.
func (s *system) cleanup() {
	s.mu.Lock()
	bins := s.binaries
	s.mu.Unlock()
	for _, b := range bins {
		b.stop()
	}
	for _, b := range bins {
		out := b.out.String()
		s.leaks.check(s.t, b.name, out)
		if s.t.Failed() {
			const tail = 48 << 10
			if len(out) > tail {
				out = "...\n" + out[len(out)-tail:]
			}
			s.t.Logf("output of binary %s:\n%s", b.name, out)
		}
	}
}

// binary is one latchkey process: a replica of the chart's Deployment, run out of cluster.
type binary struct {
	sys  *system
	name string
	// url is the token server's base URL on loopback; probeURL the manager's health probes.
	url      string
	probeURL string
	args     []string
	env      []string
	out      *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

// binaryOptions change what a replica gets beyond the chart's arguments.
type binaryOptions struct {
	// port is the --listen port; 0 means the issuer's port for the first binary of the system
	// and a free port for the others.
	port int
	// flags override chart arguments, e.g. {"leader-elect": "false"}.
	flags map[string]string
}

// start starts a replica with the arguments and environment of the chart's Deployment. Only
// what differs outside a pod changes: loopback ports, and a kubeconfig for the ServiceAccount
// that points at the system's API server proxy.
func (s *system) start(name string, o binaryOptions) *binary {
	t := s.t
	t.Helper()
	s.mu.Lock()
	first := len(s.binaries) == 0
	s.mu.Unlock()
	port := o.port
	if port == 0 {
		if first {
			port = s.issuerPort
		} else {
			port = redistest.FreePort(t)
		}
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	s.writeKubeconfig(kubeconfig)

	args := s.mgr.Args()
	args = chart.WithFlag(args, "listen", "127.0.0.1:"+strconv.Itoa(port))
	args = chart.WithFlag(args, "metrics-bind-address", "127.0.0.1:"+strconv.Itoa(redistest.FreePort(t)))
	probe := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	args = chart.WithFlag(args, "health-probe-bind-address", probe)
	args = chart.WithFlag(args, "kubeconfig", kubeconfig)
	for k, v := range o.flags {
		args = chart.WithFlag(args, k, v)
	}
	environ, err := s.mgr.Environ(s.mgr.SecretData(nil))
	if err != nil {
		t.Fatalf("resolve the chart's environment: %v", err)
	}
	b := &binary{
		sys:      s,
		name:     name,
		url:      "http://127.0.0.1:" + strconv.Itoa(port),
		probeURL: "http://" + probe,
		args:     args,
		env:      append(os.Environ(), environ...),
		out:      &syncBuffer{},
	}
	s.mu.Lock()
	s.binaries = append(s.binaries, b)
	s.mu.Unlock()
	b.launch()
	return b
}

func (s *system) writeKubeconfig(path string) {
	cfg := s.user.Config()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: "https://" + s.proxy.addr, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["latchkey"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["latchkey"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "latchkey"}
	kc.CurrentContext = "latchkey"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		s.t.Fatalf("write kubeconfig: %v", err)
	}
}

// launch starts the process. It dies with the test process (Pdeathsig), so a crashed test
// leaves nothing behind.
func (b *binary) launch() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.runs++
	_, _ = fmt.Fprintf(b.out, "=== %s: run %d ===\n", b.name, b.runs)
	cmd := exec.Command(latchkeyBinary, b.args...)
	cmd.Env = b.env
	cmd.Stdout = b.out
	cmd.Stderr = b.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.sys.t.Fatalf("start latchkey %s: %v", b.name, err)
	}
	done := make(chan struct{})
	b.cmd, b.done = cmd, done
	go func() {
		err := cmd.Wait()
		_, _ = fmt.Fprintf(b.out, "=== %s: run exited: %v ===\n", b.name, err)
		close(done)
	}()
}

// running reports whether the process is alive.
func (b *binary) running() bool {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// exitsWithin reports whether the process exits within timeout.
func (b *binary) exitsWithin(timeout time.Duration) bool {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// signal sends sig and waits up to timeout for the process to exit; then it is killed.
func (b *binary) signal(sig syscall.Signal, timeout time.Duration) {
	b.mu.Lock()
	cmd, done := b.cmd, b.done
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	_ = cmd.Process.Kill()
	<-done
}

// kill is SIGKILL: no graceful shutdown, no lease release, writes cut wherever they are.
func (b *binary) kill() { b.signal(syscall.SIGKILL, 10*time.Second) }

// stop is what the kubelet does on a pod deletion: SIGTERM, then SIGKILL after a grace period.
func (b *binary) stop() { b.signal(syscall.SIGTERM, 20*time.Second) }

// get returns the status and body of GET path on the token server.
func (b *binary) get(path string) (int, []byte, error) {
	return b.getURL(b.url + path)
}

// getURL returns the status and body of GET u.
func (b *binary) getURL(u string) (int, []byte, error) {
	resp, err := b.sys.http.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

// waitReady polls /readyz of the token server until it answers 200.
func (b *binary) waitReady(timeout time.Duration) {
	b.sys.t.Helper()
	eventually(b.sys.t, timeout, func() error {
		if !b.running() {
			return fmt.Errorf("binary %s exited", b.name)
		}
		code, _, err := b.get("/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%s /readyz: %d", b.name, code)
		}
		return nil
	})
}

// waitServing polls /healthz of the token server until it answers 200: the process is up and
// serving HTTP, ready or not (what the chart's startup probe checks).
func (b *binary) waitServing(timeout time.Duration) {
	b.sys.t.Helper()
	eventually(b.sys.t, timeout, func() error {
		if !b.running() {
			return fmt.Errorf("binary %s exited", b.name)
		}
		code, _, err := b.get("/healthz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%s /healthz: %d", b.name, code)
		}
		return nil
	})
}

// apiProxy is a TCP proxy in front of the API server. TLS passes through untouched (the
// binary's client certificate authenticates it), so cutting the proxy is, to the binary,
// exactly an API server that went away, and restoring it one that came back on the same address.
type apiProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newAPIProxy(t *testing.T, apiServer string) *apiProxy {
	u, err := url.Parse(apiServer)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	if target == "" { // envtest's Host may be host:port without a scheme
		target = apiServer
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *apiProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *apiProxy) pipe(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = dst.(*net.TCPConn).ReadFrom(src)
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// track registers a proxied pair, unless the proxy was cut meanwhile.
func (p *apiProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// cut closes the listener and every open connection: new connections are refused and watches
// break, as when the API server stops.
func (p *apiProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// restore listens again on the same address: the API server is back.
func (p *apiProxy) restore() {
	p.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; a concurrent test could only take it through the kernel's
	// ephemeral range, so retry briefly rather than fail at once.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("restore the API server proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// leakGuard holds every secret and token a test handled. No binary may ever print one
// (STYLE: log lines never carry a token, secret or password).
type leakGuard struct {
	mu     sync.Mutex
	values map[string]string // value -> what it is
}

func (g *leakGuard) add(what, value string) {
	if len(value) < 8 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.values[value] = what
}

func (g *leakGuard) check(t *testing.T, name, output string) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for v, what := range g.values {
		if strings.Contains(output, v) {
			t.Errorf("the output of binary %s contains a %s", name, what)
		}
	}
	if strings.Contains(output, "PRIVATE KEY") {
		t.Errorf("the output of binary %s contains private key material", name)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a process's stdout and stderr.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it returns nil and fails the test with its last error after
// timeout. The world converges with some delay; the tests wait for it, never for a fixed time.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// poll is eventually without the test: it returns cond's last error after timeout.
func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
