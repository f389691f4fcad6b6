package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

const h = time.Hour

func testPolicy() keyPolicy {
	return keyPolicy{Algorithm: latchkeyv1.AlgorithmES256, RotationInterval: 720 * h, PrePublish: h, Retention: 24 * h}
}

// valid is a valid key Secret's record activating at act and retiring at ret (offsets from t0).
func valid(kid string, seq int, act, ret time.Duration) keyRecord {
	return keyRecord{KeyID: kid, SecretName: fmt.Sprintf("default-%d", seq), Seq: seq, Algorithm: latchkeyv1.AlgorithmES256,
		Timeline: keymaterial.Timeline{CreatedAt: t0.Add(act - h), ActivatesAt: t0.Add(act), RetiresAt: t0.Add(ret)}, Source: sourceSecret}
}

func pendingKey(kid string, seq int, act time.Duration) keyRecord {
	k := valid(kid, seq, act, act)
	k.Pending = true
	return k
}

func memory(kid string, act, ret time.Duration) keyRecord {
	k := valid(kid, 0, act, ret)
	k.SecretName, k.Seq, k.Source, k.Problem = "", 0, sourceMemory, latchkeyv1.ReasonKeySecretMissing
	return k
}

func withRotate(k keyRecord, v string) keyRecord { k.RotateRequest = v; return k }

func TestPlanSigningKey(t *testing.T) {
	type want struct {
		generateAt *time.Duration // offset from t0
		rotateReq  string         // on the generated key
		handled    string
		promoted   string
		changed    []string
		removed    map[string]removalReason
		timelines  map[string][2]time.Duration // kid -> activates, retires (offsets)
	}
	at := func(d time.Duration) *time.Duration { return &d }
	cases := []struct {
		name string
		pol  func(*keyPolicy)
		keys []keyRecord
		now  time.Duration
		want want
	}{
		{
			name: "with no keys the first key is generated and activates at once",
			now:  5 * h,
			want: want{generateAt: at(5 * h)},
		},
		{
			name: "a pending first key is armed for one rotation interval",
			keys: []keyRecord{pendingKey("a", 1, 0)},
			want: want{changed: []string{"a"}, timelines: map[string][2]time.Duration{"a": {0, 720 * h}}},
		},
		{
			name: "a fresh active key needs nothing",
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  10 * h,
		},
		{
			name: "inside the pre-publication window the next key is generated to activate when the active key retires",
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  719 * h,
			want: want{generateAt: at(720 * h)},
		},
		{
			name: "a late controller still pre-publishes the next key and extends the active key to meet it",
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  719*h + 30*time.Minute,
			want: want{generateAt: at(720*h + 30*time.Minute), changed: []string{"a"},
				timelines: map[string][2]time.Duration{"a": {0, 720*h + 30*time.Minute}}},
		},
		{
			name: "with a successor in place nothing is generated",
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  719*h + 30*time.Minute,
		},
		{
			name: "at the hand-over the successor signs and nothing changes",
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  720 * h,
		},
		{
			name: "a retired key within its retention stays",
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  743 * h,
		},
		{
			name: "a retired key expires when its retention has passed",
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  744 * h,
			want: want{removed: map[string]removalReason{"a": removeExpired}},
		},
		{
			name: "a new rotate annotation generates a key pre-published from now and hands over when it activates",
			pol:  func(p *keyPolicy) { p.RotateRequest = "r1" },
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  10 * h,
			want: want{generateAt: at(11 * h), rotateReq: "r1", handled: "r1", changed: []string{"a"},
				timelines: map[string][2]time.Duration{"a": {0, 11 * h}}},
		},
		{
			name: "a rotate annotation already recorded in status does nothing",
			pol:  func(p *keyPolicy) { p.RotateRequest, p.LastRotateRequest = "r1", "r1" },
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  10 * h,
		},
		{
			name: "a rotate annotation already recorded on a key Secret does nothing, even before status caught up",
			pol:  func(p *keyPolicy) { p.RotateRequest = "r1" },
			keys: []keyRecord{valid("a", 1, 0, 11*h), withRotate(valid("b", 2, 11*h, 731*h), "r1")},
			now:  10 * h,
		},
		{
			name: "a rotate annotation with a Next key in place brings that key forward instead of making another",
			pol:  func(p *keyPolicy) { p.RotateRequest = "r2" },
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  700 * h,
			want: want{handled: "r2", changed: []string{"a", "b"},
				timelines: map[string][2]time.Duration{"a": {0, 701 * h}, "b": {701 * h, 1421 * h}}},
		},
		{
			name: "a rotate annotation on a SigningKey without keys is recorded on the first key",
			pol:  func(p *keyPolicy) { p.RotateRequest = "r1" },
			want: want{generateAt: at(0), rotateReq: "r1", handled: "r1"},
		},
		{
			name: "a revoked Active key leaves and the Next key is promoted to activate now",
			pol:  func(p *keyPolicy) { p.Revoked = []string{"a"} },
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  719*h + 30*time.Minute,
			want: want{promoted: "b", changed: []string{"b"}, removed: map[string]removalReason{"a": removeRevoked},
				timelines: map[string][2]time.Duration{"b": {719*h + 30*time.Minute, 1439*h + 30*time.Minute}}},
		},
		{
			name: "a revoked Active key without a Next key is replaced by a key that activates at once",
			pol:  func(p *keyPolicy) { p.Revoked = []string{"a"} },
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  10 * h,
			want: want{generateAt: at(10 * h), removed: map[string]removalReason{"a": removeRevoked}},
		},
		{
			name: "a revoked Next key leaves and a new one is pre-published inside the rotation window",
			pol:  func(p *keyPolicy) { p.Revoked = []string{"b"} },
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  719*h + 30*time.Minute,
			want: want{generateAt: at(720*h + 30*time.Minute), changed: []string{"a"},
				removed:   map[string]removalReason{"b": removeRevoked},
				timelines: map[string][2]time.Duration{"a": {0, 720*h + 30*time.Minute}}},
		},
		{
			name: "a revoked Retired key leaves and nothing else changes",
			pol:  func(p *keyPolicy) { p.Revoked = []string{"a"} },
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  730 * h,
			want: want{removed: map[string]removalReason{"a": removeRevoked}},
		},
		{
			name: "a remembered Active key whose Secret is lost is replaced through pre-publication and retires when the replacement activates",
			keys: []keyRecord{memory("a", 0, 720*h)},
			now:  10 * h,
			want: want{generateAt: at(11 * h), timelines: map[string][2]time.Duration{"a": {0, 11 * h}}},
		},
		{
			name: "a remembered Active key with a replacement pending keeps its memory until the replacement activates",
			keys: []keyRecord{memory("a", 0, 11*h), valid("b", 2, 11*h, 731*h)},
			now:  10*h + 30*time.Minute,
		},
		{
			name: "a remembered Next key never signed and is dropped",
			keys: []keyRecord{valid("a", 1, 0, 720*h), memory("b", 720*h, 1440*h)},
			now:  719 * h,
			want: want{generateAt: at(720 * h), removed: map[string]removalReason{"b": removeNeverSigned}},
		},
		{
			name: "a remembered Retired key stays published until it expires",
			keys: []keyRecord{memory("a", 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  743 * h,
		},
		{
			name: "a remembered Retired key leaves when it expires",
			keys: []keyRecord{memory("a", 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:  744 * h,
			want: want{removed: map[string]removalReason{"a": removeExpired}},
		},
		{
			name: "an orphan in the JWKS stays for one retention period",
			keys: []keyRecord{valid("a", 1, 0, 720*h), {KeyID: "o", Source: sourceOrphan,
				Timeline: keymaterial.Timeline{CreatedAt: t0.Add(10 * h), ActivatesAt: t0.Add(10 * h), RetiresAt: t0.Add(10 * h)}}},
			now: 33 * h,
		},
		{
			name: "two successors from racing controllers: the later one never signed and is removed",
			keys: []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h), valid("c", 3, 720*h, 1440*h)},
			now:  719*h + 30*time.Minute,
			want: want{removed: map[string]removalReason{"c": removeSuperfluous}},
		},
		{
			name: "a changed algorithm rotates through pre-publication",
			pol:  func(p *keyPolicy) { p.Algorithm = latchkeyv1.AlgorithmEdDSA },
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  10 * h,
			want: want{generateAt: at(11 * h), changed: []string{"a"}, timelines: map[string][2]time.Duration{"a": {0, 11 * h}}},
		},
		{
			name: "when every key lapsed while the controller was down a new key activates at once",
			keys: []keyRecord{valid("a", 1, 0, 720*h)},
			now:  730 * h,
			want: want{generateAt: at(730 * h)},
		},
		{
			name: "a pending successor stuck past its activation is armed and the old key retires now, not in the past",
			keys: []keyRecord{valid("a", 1, 0, 720*h), pendingKey("b", 2, 700*h)},
			now:  710 * h,
			want: want{changed: []string{"a", "b"},
				timelines: map[string][2]time.Duration{"a": {0, 710 * h}, "b": {700 * h, 1420 * h}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := testPolicy()
			if tc.pol != nil {
				tc.pol(&pol)
			}
			now := t0.Add(tc.now)
			plan := planSigningKey(pol, slices.Clone(tc.keys), now)

			switch {
			case tc.want.generateAt == nil && plan.Generate != nil:
				t.Errorf("Generate = %+v, want none", *plan.Generate)
			case tc.want.generateAt != nil && plan.Generate == nil:
				t.Errorf("Generate = none, want activation at t0+%v", *tc.want.generateAt)
			case tc.want.generateAt != nil:
				if got := plan.Generate.ActivatesAt.Sub(t0); got != *tc.want.generateAt {
					t.Errorf("Generate.ActivatesAt = t0+%v, want t0+%v", got, *tc.want.generateAt)
				}
				if plan.Generate.RotateRequest != tc.want.rotateReq {
					t.Errorf("Generate.RotateRequest = %q, want %q", plan.Generate.RotateRequest, tc.want.rotateReq)
				}
			}
			if plan.RotateRequestHandled != tc.want.handled {
				t.Errorf("RotateRequestHandled = %q, want %q", plan.RotateRequestHandled, tc.want.handled)
			}
			if plan.Promoted != tc.want.promoted {
				t.Errorf("Promoted = %q, want %q", plan.Promoted, tc.want.promoted)
			}
			gotChanged := slices.Sorted(maps.Keys(plan.Changed))
			if !slices.Equal(gotChanged, tc.want.changed) { // nil and empty compare equal
				t.Errorf("Changed = %v, want %v", gotChanged, tc.want.changed)
			}
			gotRemoved := map[string]removalReason{}
			for _, rm := range plan.Removed {
				gotRemoved[rm.Key.KeyID] = rm.Why
			}
			if !maps.Equal(gotRemoved, tc.want.removed) { // nil and empty compare equal
				t.Errorf("Removed = %v, want %v", gotRemoved, tc.want.removed)
			}
			for kid, tl := range tc.want.timelines {
				i := slices.IndexFunc(plan.Keys, func(k keyRecord) bool { return k.KeyID == kid })
				if i < 0 {
					t.Errorf("key %s missing from plan", kid)
					continue
				}
				k := plan.Keys[i]
				if k.Timeline.ActivatesAt.Sub(t0) != tl[0] || k.Timeline.RetiresAt.Sub(t0) != tl[1] {
					t.Errorf("key %s window = [t0+%v, t0+%v), want [t0+%v, t0+%v)", kid,
						k.Timeline.ActivatesAt.Sub(t0), k.Timeline.RetiresAt.Sub(t0), tl[0], tl[1])
				}
			}

			// Planning again over what the plan produced changes nothing: the reconcile is
			// idempotent, and a retry after a crash cannot rotate twice.
			after := applyPlan(plan, pol, now)
			pol2 := pol
			if plan.RotateRequestHandled != "" {
				pol2.LastRotateRequest = plan.RotateRequestHandled
			}
			again := planSigningKey(pol2, after, now)
			if again.Generate != nil || len(again.Changed) != 0 || len(again.Removed) != 0 || again.Promoted != "" {
				t.Errorf("second plan is not empty: generate=%v changed=%v removed=%v promoted=%q",
					again.Generate, again.Changed, again.Removed, again.Promoted)
			}
			// And whatever happens, at most one key signs and every armed valid key is distinct.
			if _, ok := activeKey(after, now, true); !ok && !slices.ContainsFunc(after, func(k keyRecord) bool { return !k.valid() }) {
				t.Errorf("no valid key signs after the plan: %+v", after)
			}
		})
	}
}

// applyPlan is what the reconciler does with a plan: the kept keys plus the generated one, armed.
func applyPlan(plan keyPlan, pol keyPolicy, now time.Time) []keyRecord {
	out := slices.Clone(plan.Keys)
	if g := plan.Generate; g != nil {
		out = append(out, keyRecord{KeyID: "new", SecretName: "default-99", Seq: 99, Algorithm: pol.Algorithm,
			RotateRequest: g.RotateRequest, Source: sourceSecret,
			Timeline: keymaterial.Timeline{CreatedAt: now, ActivatesAt: g.ActivatesAt, RetiresAt: g.ActivatesAt.Add(pol.RotationInterval)}})
	}
	return out
}

func TestDescribeKeys(t *testing.T) {
	pol := testPolicy()
	cases := []struct {
		name         string
		keys         []keyRecord
		now          time.Duration
		states       map[string]latchkeyv1.KeyState
		active       string
		nextRotation time.Duration // 0: none
		requeue      time.Duration
	}{
		{
			name:   "a single key in its window is Active and the next transition is the start of pre-publication",
			keys:   []keyRecord{valid("a", 1, 0, 720*h)},
			now:    10 * h,
			states: map[string]latchkeyv1.KeyState{"a": latchkeyv1.KeyStateActive}, active: "a",
			nextRotation: 720 * h, requeue: 709 * h,
		},
		{
			name:   "a pre-published key is Next and the next transition is its activation",
			keys:   []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:    719*h + 30*time.Minute,
			states: map[string]latchkeyv1.KeyState{"a": latchkeyv1.KeyStateActive, "b": latchkeyv1.KeyStateNext}, active: "a",
			nextRotation: 720 * h, requeue: 30 * time.Minute,
		},
		{
			name:   "after the hand-over the old key is Retired and the next transition is its expiry",
			keys:   []keyRecord{valid("a", 1, 0, 720*h), valid("b", 2, 720*h, 1440*h)},
			now:    720 * h,
			states: map[string]latchkeyv1.KeyState{"a": latchkeyv1.KeyStateRetired, "b": latchkeyv1.KeyStateActive}, active: "b",
			nextRotation: 1440 * h, requeue: 24 * h,
		},
		{
			name:   "a remembered key in its window is shown Active but is not the activeKeyID",
			keys:   []keyRecord{memory("a", 0, 11*h), valid("b", 2, 11*h, 731*h)},
			now:    10 * h,
			states: map[string]latchkeyv1.KeyState{"a": latchkeyv1.KeyStateActive, "b": latchkeyv1.KeyStateNext}, active: "",
			nextRotation: 11 * h, requeue: h,
		},
		{
			name:   "a pending key is Next, and signing resumes at its activation",
			keys:   []keyRecord{pendingKey("a", 1, h)},
			now:    0,
			states: map[string]latchkeyv1.KeyState{"a": latchkeyv1.KeyStateNext}, active: "",
			nextRotation: h, requeue: h,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := describeKeys(tc.keys, pol, t0.Add(tc.now))
			for _, k := range v.Keys {
				if k.State != tc.states[k.KeyID] {
					t.Errorf("key %s state = %s, want %s", k.KeyID, k.State, tc.states[k.KeyID])
				}
			}
			if v.ActiveKeyID != tc.active {
				t.Errorf("ActiveKeyID = %q, want %q", v.ActiveKeyID, tc.active)
			}
			switch {
			case tc.nextRotation == 0 && v.NextRotation != nil:
				t.Errorf("NextRotation = %v, want none", v.NextRotation)
			case tc.nextRotation != 0 && (v.NextRotation == nil || v.NextRotation.Sub(t0) != tc.nextRotation):
				t.Errorf("NextRotation = %v, want t0+%v", v.NextRotation, tc.nextRotation)
			}
			if v.RequeueAfter != tc.requeue {
				t.Errorf("RequeueAfter = %v, want %v", v.RequeueAfter, tc.requeue)
			}
		})
	}
}

// keySecretFor builds a valid key Secret controlled by sk.
func keySecretFor(t *testing.T, sk *latchkeyv1.SigningKey, name string, tl keymaterial.Timeline) (*corev1.Secret, *keymaterial.Key) {
	t.Helper()
	key, err := keymaterial.Generate(latchkeyv1.AlgorithmES256)
	if err != nil {
		t.Fatal(err)
	}
	data, err := key.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sk.Namespace, Annotations: tl.Annotations(),
			Labels: map[string]string{latchkeyv1.LabelSigningKey: sk.Name, latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: latchkeyv1.GroupVersion.String(), Kind: "SigningKey",
				Name: sk.Name, UID: sk.UID, Controller: ptr.To(true)}}},
		Data: data,
	}
	return s, key
}

func TestObserveKeys(t *testing.T) {
	sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "ns", UID: types.UID("sk-uid")}}
	live := keymaterial.Timeline{CreatedAt: t0, ActivatesAt: t0, RetiresAt: t0.Add(720 * h)}
	statusOf := func(kid, secret string, tl keymaterial.Timeline) latchkeyv1.KeyStatus {
		return latchkeyv1.KeyStatus{KeyID: kid, SecretName: secret, State: latchkeyv1.KeyStateActive,
			CreatedAt: metaTime(tl.CreatedAt), ActivatesAt: metaTime(tl.ActivatesAt), RetiresAt: metaTime(tl.RetiresAt)}
	}
	type result struct {
		source     map[string]keySource // kid -> source
		problem    map[string]string    // kid -> problem
		issues     []string             // reasons
		deleteNow  []string
		waitBefore bool
		maxSeq     int
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string)
		now   time.Duration
		want  func(kid string) result
	}{
		{
			name: "a valid Secret the SigningKey controls is a key",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				s, k := keySecretFor(t, sk, "default-1", live)
				return []corev1.Secret{*s}, nil, nil, k.KeyID
			},
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceSecret}, maxSeq: 1}
			},
		},
		{
			name: "a Secret with bad PEM is invalid and its key is remembered from status and the JWKS",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				s, k := keySecretFor(t, sk, "default-1", live)
				s.Data[latchkeyv1.KeyDataPrivateKey] = []byte("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
				return []corev1.Secret{*s}, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceMemory}, problem: map[string]string{kid: latchkeyv1.ReasonKeySecretInvalid},
					issues: []string{latchkeyv1.ReasonKeySecretInvalid}, maxSeq: 1}
			},
		},
		{
			name: "a Secret whose kid is not its key's thumbprint is invalid",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				s, k := keySecretFor(t, sk, "default-1", live)
				s.Data[latchkeyv1.KeyDataKeyID] = []byte("somebody-else")
				return []corev1.Secret{*s}, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceMemory}, problem: map[string]string{kid: latchkeyv1.ReasonKeySecretInvalid},
					issues: []string{latchkeyv1.ReasonKeySecretInvalid}, maxSeq: 1}
			},
		},
		{
			name: "a Secret controlled by someone else is never used, and the key it claims is remembered",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				s, k := keySecretFor(t, sk, "default-1", live)
				s.OwnerReferences[0].UID = "intruder"
				return []corev1.Secret{*s}, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceMemory}, problem: map[string]string{kid: latchkeyv1.ReasonKeySecretInvalid},
					issues: []string{latchkeyv1.ReasonKeySecretInvalid, latchkeyv1.ReasonKeySecretInvalid}, maxSeq: 1}
			},
		},
		{
			name: "a key created moments ago whose Secret is not in the cache yet means wait",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				_, k := keySecretFor(t, sk, "default-1", live)
				return nil, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: 10 * time.Second,
			want: func(kid string) result {
				return result{waitBefore: true, source: map[string]keySource{}, maxSeq: 1}
			},
		},
		{
			name: "a key whose Secret is gone after the grace is remembered as missing",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				_, k := keySecretFor(t, sk, "default-1", live)
				return nil, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceMemory}, problem: map[string]string{kid: latchkeyv1.ReasonKeySecretMissing},
					issues: []string{latchkeyv1.ReasonKeySecretMissing}, maxSeq: 1}
			},
		},
		{
			name: "a lost key whose public key is in no JWKS cannot be published and is reported",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				_, k := keySecretFor(t, sk, "default-1", live)
				return nil, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, nil, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{}, issues: []string{latchkeyv1.ReasonKeySecretMissing}, maxSeq: 1}
			},
		},
		{
			name: "a corrupt Secret that holds no remembered key is deleted at once",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				s, _ := keySecretFor(t, sk, "default-4", live)
				delete(s.Annotations, latchkeyv1.AnnotationKeyRetiresAt)
				return []corev1.Secret{*s}, nil, nil, ""
			},
			want: func(kid string) result {
				return result{source: map[string]keySource{}, issues: []string{latchkeyv1.ReasonKeySecretInvalid}, deleteNow: []string{"default-4"}, maxSeq: 4}
			},
		},
		{
			name: "a key only the JWKS knows is an orphan",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				_, k := keySecretFor(t, sk, "default-1", live)
				return nil, nil, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			want: func(kid string) result {
				return result{source: map[string]keySource{kid: sourceOrphan}}
			},
		},
		{
			name: "a revoked key is forgotten even though status and the JWKS remember it",
			setup: func(t *testing.T) ([]corev1.Secret, []latchkeyv1.KeyStatus, []jose.JSONWebKey, string) {
				_, k := keySecretFor(t, sk, "default-1", live)
				sk.Spec.RevokedKeyIDs = []string{k.KeyID}
				return nil, []latchkeyv1.KeyStatus{statusOf(k.KeyID, "default-1", live)}, []jose.JSONWebKey{k.PublicJWK()}, k.KeyID
			},
			now: h,
			want: func(kid string) result {
				return result{source: map[string]keySource{}, maxSeq: 1}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sk.Spec.RevokedKeyIDs = nil
			secrets, status, jwks, kid := tc.setup(t)
			sk.Status.Keys = status
			obs := observeKeys(sk, secrets, jwks, t0.Add(tc.now))
			want := tc.want(kid)
			if (obs.WaitForCache > 0) != want.waitBefore {
				t.Errorf("WaitForCache = %v, want wait=%v", obs.WaitForCache, want.waitBefore)
			}
			if want.waitBefore {
				return // the reconciler acts on nothing else
			}
			got := map[string]keySource{}
			for _, r := range obs.Records {
				got[r.KeyID] = r.Source
				if p := want.problem[r.KeyID]; r.Source == sourceMemory && r.Problem != p {
					t.Errorf("key %s problem = %q, want %q", r.KeyID, r.Problem, p)
				}
				if _, ok := obs.Public[r.KeyID]; !ok {
					t.Errorf("key %s has no public key", r.KeyID)
				} else if pub := obs.Public[r.KeyID]; !pub.IsPublic() {
					t.Errorf("key %s: published JWK is not public", r.KeyID)
				}
			}
			if !maps.Equal(got, want.source) {
				t.Errorf("records = %v, want %v", got, want.source)
			}
			var reasons []string
			for _, is := range obs.Issues {
				reasons = append(reasons, is.Reason)
			}
			if strings.Join(reasons, ",") != strings.Join(want.issues, ",") {
				t.Errorf("issues = %v, want %v (%+v)", reasons, want.issues, obs.Issues)
			}
			var del []string
			for _, s := range obs.DeleteNow {
				del = append(del, s.Name)
			}
			if strings.Join(del, ",") != strings.Join(want.deleteNow, ",") {
				t.Errorf("DeleteNow = %v, want %v", del, want.deleteNow)
			}
			if obs.MaxSeq != want.maxSeq {
				t.Errorf("MaxSeq = %d, want %d", obs.MaxSeq, want.maxSeq)
			}
		})
	}
}

func TestKeySecretName(t *testing.T) {
	if got := keySecretName("default", 3); got != "default-3" {
		t.Errorf("keySecretName(default, 3) = %q", got)
	}
	long := strings.Repeat("k", 253)
	a, b := keySecretName(long, 12), keySecretName(long[:252]+"j", 12)
	for _, n := range []string{a, b} {
		if len(n) > 253 || keySecretSeq(n) != 12 {
			t.Errorf("keySecretName(long) = %q (len %d, seq %d): want at most 253 characters ending in -12", n, len(n), keySecretSeq(n))
		}
	}
	if a == b {
		t.Errorf("two long names collide on %q", a)
	}
	for name, seq := range map[string]int{"default-1": 1, "default-jwks": 0, "x": 0, "a-b-17": 17} {
		if got := keySecretSeq(name); got != seq {
			t.Errorf("keySecretSeq(%q) = %d, want %d", name, got, seq)
		}
	}
}

func TestValidateSigningKey(t *testing.T) {
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	cases := []struct {
		name    string
		mutate  func(*latchkeyv1.SigningKey)
		wantErr string
	}{
		{"the defaults are valid", func(*latchkeyv1.SigningKey) {}, ""},
		{"a symmetric algorithm is refused", func(sk *latchkeyv1.SigningKey) { sk.Spec.Algorithm = "HS256" }, "algorithm"},
		{"a rotation interval under an hour is refused", func(sk *latchkeyv1.SigningKey) { sk.Spec.RotationInterval = dur(30 * time.Minute) }, "rotationInterval"},
		{"a retention under an hour is refused", func(sk *latchkeyv1.SigningKey) { sk.Spec.Retention = dur(10 * time.Minute) }, "retention"},
		{"a pre-publication as long as the rotation interval is refused", func(sk *latchkeyv1.SigningKey) {
			sk.Spec.RotationInterval, sk.Spec.PrePublish = dur(2*h), dur(2*h)
		}, "prePublish"},
		{"a name too long for a label is refused", func(sk *latchkeyv1.SigningKey) { sk.Name = strings.Repeat("n", 64) }, "label"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sk := &latchkeyv1.SigningKey{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
			tc.mutate(sk)
			err := validateSigningKey(sk)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("validateSigningKey() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
