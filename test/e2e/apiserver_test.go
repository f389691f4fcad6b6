package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// leaseName is the leader-election Lease of the binary (cluster.go, LeaderElectionID).
const leaseName = "latchkey-leader.auth.latchkey.dev"

// TestServerBeforeCacheSync restarts a replica while the API server is unreachable, so its
// informer cache cannot sync (SECURITY-CASES 85).
//
// The process serves HTTP at once (the chart's startup probe needs /healthz), but /readyz (the
// token server's and the manager's) says 503, and /token answers 503 temporarily_unavailable
// for a known client and an unknown one alike: with no cache, "no such client" would be a
// guess, and invalid_client would make clients drop credentials that are fine. /jwks is 503
// too, rather than an empty key set that would make verifiers reject every token. When the
// API server comes back, the replica becomes ready by itself and answers normally.
func TestServerBeforeCacheSync(t *testing.T) {
	t.Parallel()
	s := newSystem(t, systemOptions{})
	b := s.start("replica-0", binaryOptions{})
	b.waitReady(60 * time.Second)
	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "inventory"))
	creds := s.waitCredentials(ns, "inventory")
	b.eventuallyToken(creds, 30*time.Second)

	// The API server goes away, and the replica restarts meanwhile (a rollout, a node drain).
	b.stop()
	s.proxy.cut()
	b.launch()
	b.waitServing(30 * time.Second)
	// Several samples, spread over a second, all of them not ready.
	for i := range 10 {
		if code, _, err := b.get("/readyz"); err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("sample %d: token server /readyz before the cache synced: %d %v, want 503", i, code, err)
		}
		// controller-runtime answers a failed check with 500; the kubelet takes any status from
		// 400 up as not ready.
		if code, _, err := b.getURL(b.probeURL + "/readyz"); err != nil || code < http.StatusBadRequest {
			t.Fatalf("sample %d: manager /readyz before the cache synced: %d %v, want a failure", i, code, err)
		}
		for _, c := range []credentials{creds, {ClientID: "nobody." + ns, ClientSecret: "not-a-secret-0123456789"}} {
			r, err := b.token(c.ClientID, c.ClientSecret)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != http.StatusServiceUnavailable || r.Error != "temporarily_unavailable" || r.AccessToken != "" {
				t.Fatalf("sample %d: /token for %s before the cache synced: %v, want 503 temporarily_unavailable", i, c.ClientID, r)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("a token error carries Cache-Control %q, want no-store", cc)
			}
		}
		if code, _, err := b.get("/jwks"); err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("sample %d: /jwks before the cache synced: %d %v, want 503", i, code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	s.proxy.restore()
	b.waitReady(60 * time.Second)
	if code, _, err := b.getURL(b.probeURL + "/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("manager /readyz after the cache synced: %d %v", code, err)
	}
	b.mustToken(creds)
	r, err := b.token("nobody."+ns, "not-a-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusUnauthorized || r.Error != "invalid_client" {
		t.Fatalf("an unknown client once the cache synced: %v, want 401 invalid_client", r)
	}
}

// TestAPIServerOutage cuts the API server away from two replicas running as the chart runs
// them (leader election on) for longer than the leader's 15s lease.
//
// An API server outage (a control-plane upgrade) is not a token outage: every replica whose
// cache has synced keeps issuing tokens from it and stays ready. The leader may lose its lease
// and exit, as controller-runtime managers do; the test restarts it at once, as the kubelet
// would, and the restarted replica, whose cache cannot sync, is not ready and answers 503
// temporarily_unavailable, never invalid_client (SECURITY-CASES 85). The follower must stay up,
// ready and serving throughout. When the API server is back, the system recovers by itself:
// both replicas are ready, and an OAuthClient applied after the outage is reconciled and
// served by both.
func TestAPIServerOutage(t *testing.T) {
	t.Parallel()
	const outage = 20 * time.Second
	s := newSystem(t, systemOptions{})
	ctx := t.Context()
	leader := s.start("replica-0", binaryOptions{})
	leader.waitReady(60 * time.Second)
	// replica-0 started alone, so it holds the Lease once one exists.
	eventually(t, 30*time.Second, func() error {
		var l coordinationv1.Lease
		if err := admin.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: leaseName}, &l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("lease has no holder")
		}
		return nil
	})
	follower := s.start("replica-1", binaryOptions{})
	follower.waitReady(60 * time.Second)
	replicas := []*binary{leader, follower}

	ns := s.clientNS[0]
	s.createClient(confidentialClient(ns, "before"))
	creds := s.waitCredentials(ns, "before")
	for _, b := range replicas {
		b.eventuallyToken(creds, 30*time.Second)
	}

	s.proxy.cut()
	cutAt := time.Now()
	served := map[string]int{}
	restarts := 0
	for time.Since(cutAt) < outage {
		if !leader.running() {
			leader.launch() // the kubelet restarts the container
			restarts++
			leader.waitServing(30 * time.Second)
		}
		for _, b := range replicas {
			code, _, err := b.get("/readyz")
			ready := err == nil && code == http.StatusOK
			r, terr := b.token(creds.ClientID, creds.ClientSecret)
			switch {
			case b == leader && (err != nil || terr != nil) && leader.exitsWithin(5*time.Second):
				// It lost its lease and exited while we asked; it is restarted above.
			case ready && terr == nil && r.Status == http.StatusOK:
				served[b.name]++
			case b == leader && restarts > 0 && !ready && terr == nil &&
				r.Status == http.StatusServiceUnavailable && r.Error == "temporarily_unavailable":
				// Restarted during the outage: not ready, and it says so.
			default:
				t.Fatalf("%s, %v into the outage: /readyz %d %v; /token %v %v", b.name,
					time.Since(cutAt).Round(time.Second), code, err, r, terr)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !follower.running() {
		t.Fatalf("the follower exited during the API server outage")
	}
	t.Logf("during a %v outage: tokens served %v; the leader was restarted %d time(s)", outage, served, restarts)
	if served[follower.name] == 0 {
		t.Fatal("the follower served no token during the outage")
	}

	s.proxy.restore()
	for _, b := range replicas {
		b.waitReady(60 * time.Second)
	}
	s.createClient(confidentialClient(ns, "after"))
	after := s.waitCredentials(ns, "after")
	for _, b := range replicas {
		b.eventuallyToken(after, 30*time.Second)
		b.mustToken(creds)
	}
}
