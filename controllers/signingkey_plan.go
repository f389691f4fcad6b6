package controllers

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// This file holds the SigningKey decisions as pure functions of (policy, observed keys, now), in
// the manner of cert-manager's issuance policies and dex's rotation strategy. The reconciler
// observes, calls planSigningKey, executes the plan in a fixed order of writes, and derives the
// status with describeKeys. Nothing here reads a clock or talks to the API server.
//
// The key timeline (DESIGN.md "SigningKey"): a key is created Next (published, not signing), is
// Active from activatesAt to retiresAt, Retired (published, not signing) until expiresAt =
// retiresAt + retention, then its Secret is deleted and it leaves the JWKS. Which key signs is
// keymaterial.ActiveAt, the rule the token server uses too.
//
// A new key is first written "pending": its Secret records a zero-length signing window
// (activates-at == retires-at), so neither ActiveAt nor the token server can pick it. Only after
// the JWKS ConfigMap that contains its public key has been written does the controller "arm" it
// (retires-at = activates-at + rotationInterval). That is what guarantees that no key ever signs
// before it is published, even a key that activates at once, and even if the controller dies
// between the two writes.

// staleCacheGrace is how long after its creation a key that status.keys records, but whose Secret
// the cache does not show, is assumed to be hidden by a lagging Secret informer rather than
// deleted. The SigningKey informer can deliver our own status patch before the Secret informer
// delivers the Secret created just before it; acting on that view would report a phantom
// deletion and generate a needless replacement.
const staleCacheGrace = time.Minute

// keySource says where the planner learned about a key.
type keySource int

const (
	// sourceSecret: a valid key Secret controlled by the SigningKey, the record of truth.
	sourceSecret keySource = iota
	// sourceMemory: status.keys remembers the key and the JWKS ConfigMap holds its public key,
	// but its Secret is gone or unusable. It stays published until it expires, because tokens it
	// signed may still be live (SECURITY-CASES item 88).
	sourceMemory
	// sourceOrphan: only the JWKS ConfigMap knows the key. Its history is unknown, so it is
	// treated as having signed until now and stays published for one retention period.
	sourceOrphan
)

func (s keySource) String() string {
	switch s {
	case sourceSecret:
		return "secret"
	case sourceMemory:
		return "memory"
	default:
		return "orphan"
	}
}

// keyRecord is one key as the planner sees it.
type keyRecord struct {
	KeyID string
	// SecretName is the key's Secret. For a remembered key it is set only while an unusable
	// Secret (corrupt, or not controlled by the SigningKey) still sits there; the controller
	// deletes it with the key only if it controls it.
	SecretName string
	// Seq is the sequence number in SecretName, 0 when unknown.
	Seq       int
	Algorithm latchkeyv1.SigningAlgorithm
	Timeline  keymaterial.Timeline
	// Pending: the key is generated but not yet armed (zero-length window, see above).
	Pending bool
	// RotateRequest is the rotate annotation value recorded on the key's Secret.
	RotateRequest string
	Source        keySource
	// Problem is the condition reason of a remembered key: why its Secret cannot be used.
	Problem string
}

func (k keyRecord) valid() bool { return k.Source == sourceSecret }

func (k keyRecord) expiresAt(retention time.Duration) time.Time {
	return k.Timeline.RetiresAt.Add(retention)
}

// keyPolicy is the part of a SigningKey that planning needs, with defaults applied.
type keyPolicy struct {
	Algorithm        latchkeyv1.SigningAlgorithm
	RotationInterval time.Duration
	PrePublish       time.Duration
	Retention        time.Duration
	Revoked          []string
	// RotateRequest is the value of the rotate annotation ("" when absent).
	RotateRequest string
	// LastRotateRequest is status.lastRotateRequest.
	LastRotateRequest string
}

// policyFor reads the policy of sk.
func policyFor(sk *latchkeyv1.SigningKey) keyPolicy {
	return keyPolicy{
		Algorithm:         sk.EffectiveAlgorithm(),
		RotationInterval:  sk.RotationInterval(),
		PrePublish:        sk.PrePublish(),
		Retention:         sk.Retention(),
		Revoked:           sk.Spec.RevokedKeyIDs,
		RotateRequest:     sk.Annotations[latchkeyv1.AnnotationRotate],
		LastRotateRequest: sk.Status.LastRotateRequest,
	}
}

// removalReason says why a key leaves.
type removalReason string

const (
	removeExpired     removalReason = "expired"
	removeRevoked     removalReason = "revoked"
	removeNeverSigned removalReason = "never signed and its Secret is gone"
	removeSuperfluous removalReason = "superfluous successor"
)

// removal is a key that leaves the JWKS, status.keys and (when it has one) its Secret.
type removal struct {
	Key keyRecord
	Why removalReason
}

// keyGeneration asks for a new key. It is created pending and armed after publication.
type keyGeneration struct {
	ActivatesAt   time.Time
	RotateRequest string
	// Why is a short phrase for the Event.
	Why string
}

// keyPlan is what planSigningKey decided.
type keyPlan struct {
	// Keys are the keys that stay, with their desired timelines, in activation order.
	Keys []keyRecord
	// Changed names the Secret-backed keys in Keys whose Secret must be updated (timeline,
	// rotate request, arming). Arming and any other change are one Update.
	Changed map[string]bool
	// Removed keys leave the JWKS and status; their Secrets (if any) are deleted.
	Removed []removal
	// Generate, when set, asks for one new key.
	Generate *keyGeneration
	// Promoted is the kid of a Next key moved to activate now because nothing else could sign.
	Promoted string
	// RotateRequestHandled is the rotate annotation value acted on now ("" if none).
	RotateRequestHandled string
}

// planSigningKey decides, from the policy, the keys observed and the time, what to create,
// update and delete. It is deterministic and idempotent: planning again over the state the plan
// produces changes nothing.
func planSigningKey(pol keyPolicy, observed []keyRecord, now time.Time) keyPlan {
	plan := keyPlan{Changed: map[string]bool{}}

	// 1. Keys that leave: revoked (at once, D6), expired (retention elapsed after retirement),
	// and keys that never signed whose Secret is gone (nothing can verify against them).
	var live []keyRecord
	for _, k := range observed {
		switch {
		case slices.Contains(pol.Revoked, k.KeyID):
			plan.Removed = append(plan.Removed, removal{k, removeRevoked})
		case !k.Pending && !now.Before(k.expiresAt(pol.Retention)):
			plan.Removed = append(plan.Removed, removal{k, removeExpired})
		case !k.valid() && (k.Pending || k.Timeline.ActivatesAt.After(now)):
			plan.Removed = append(plan.Removed, removal{k, removeNeverSigned})
		default:
			live = append(live, k)
		}
	}

	// 2. Who signs now: A among valid keys (what status.activeKeyID reports), M among every
	// armed key, including remembered ones whose private key the token server may still hold in
	// memory (it keeps signing with it, so the replacement must be pre-published).
	a, hasA := activeKey(live, now, true)
	_, hasM := activeKey(live, now, false)

	// 3. The successor: the valid key that will sign next. There is at most one; more can only
	// come from racing controllers, and the extras never signed, so they are removed.
	var succs []int
	for i, k := range live {
		if k.valid() && (k.Pending || k.Timeline.ActivatesAt.After(now)) {
			succs = append(succs, i)
		}
	}
	slices.SortFunc(succs, func(i, j int) int {
		return cmp.Or(live[i].Timeline.ActivatesAt.Compare(live[j].Timeline.ActivatesAt),
			cmp.Compare(live[i].Seq, live[j].Seq), strings.Compare(live[i].KeyID, live[j].KeyID))
	})
	succ := -1
	if len(succs) > 0 {
		succ = succs[0]
		drop := map[int]bool{}
		for _, i := range succs[1:] {
			plan.Removed = append(plan.Removed, removal{live[i], removeSuperfluous})
			drop[i] = true
		}
		kept := live[:0:0]
		for i, k := range live {
			if drop[i] {
				continue
			}
			if i == succ {
				succ = len(kept)
			}
			kept = append(kept, k)
		}
		live = kept
	}

	rotateReq := pol.RotateRequest != "" && pol.RotateRequest != pol.LastRotateRequest &&
		!slices.ContainsFunc(observed, func(k keyRecord) bool { return k.RotateRequest == pol.RotateRequest })

	move := func(i int, at time.Time) {
		k := &live[i]
		k.Timeline.ActivatesAt = at
		if !k.Pending {
			k.Timeline.RetiresAt = at.Add(pol.RotationInterval)
		}
		plan.Changed[k.KeyID] = true
	}

	// 4. Rotation, replacement and promotion.
	switch {
	case hasA || hasM:
		// Something signs. Every new key goes through pre-publication.
		prePublished := now.Add(pol.PrePublish)
		switch {
		case rotateReq:
			// The rotate annotation: rotate now, still pre-published. An existing Next key has
			// never signed, so it is as fresh as a new one: bring it forward instead.
			if succ >= 0 {
				if live[succ].Timeline.ActivatesAt.After(prePublished) {
					move(succ, prePublished)
				}
				live[succ].RotateRequest = pol.RotateRequest
				plan.Changed[live[succ].KeyID] = true
			} else {
				plan.Generate = &keyGeneration{ActivatesAt: prePublished, RotateRequest: pol.RotateRequest, Why: "rotation requested"}
			}
			plan.RotateRequestHandled = pol.RotateRequest
		case succ >= 0:
			// The successor is already there.
		case !hasA:
			// The signer's Secret is lost: replace it through pre-publication.
			plan.Generate = &keyGeneration{ActivatesAt: prePublished, Why: "the active key's Secret is missing or invalid"}
		case a.Algorithm != pol.Algorithm:
			plan.Generate = &keyGeneration{ActivatesAt: prePublished, Why: "the algorithm changed"}
		case !now.Before(a.Timeline.RetiresAt.Add(-pol.PrePublish)):
			// Scheduled rotation. If the controller was late, the new key still gets its full
			// pre-publication, and the active key is extended to meet it (step 6).
			at := a.Timeline.RetiresAt
			if at.Before(prePublished) {
				at = prePublished
			}
			plan.Generate = &keyGeneration{ActivatesAt: at, Why: "scheduled rotation"}
		}
	default:
		// Nothing signs: the first key, a revoked Active key, or every key lapsed while the
		// controller was down. There is nothing to pre-publish against (no token can be
		// verified with a key that does not exist yet), and every second without a key is an
		// outage, so the Next key is promoted or a fresh key activates at once.
		if succ >= 0 {
			if live[succ].Timeline.ActivatesAt.After(now) {
				move(succ, now)
				plan.Promoted = live[succ].KeyID
			}
		} else {
			why := "no key signs"
			if len(observed) == 0 {
				why = "first key"
			}
			plan.Generate = &keyGeneration{ActivatesAt: now, Why: why}
		}
		if rotateReq {
			if plan.Generate != nil {
				plan.Generate.RotateRequest = pol.RotateRequest
			}
			plan.RotateRequestHandled = pol.RotateRequest
		}
	}

	// 5. Arm every pending valid key; the executor does it only after publication.
	for i := range live {
		if live[i].valid() && live[i].Pending {
			live[i].Pending = false
			live[i].Timeline.RetiresAt = live[i].Timeline.ActivatesAt.Add(pol.RotationInterval)
			plan.Changed[live[i].KeyID] = true
		}
	}

	// 6. Hand-over: a key stops signing when its valid successor activates (ActiveAt already
	// prefers the newer key; recording it starts the retention clock at the right instant),
	// and the key signing now is extended to meet a successor that activates after it retires,
	// so that there is never a gap.
	slices.SortStableFunc(live, func(x, y keyRecord) int {
		return cmp.Or(x.Timeline.ActivatesAt.Compare(y.Timeline.ActivatesAt), strings.Compare(x.KeyID, y.KeyID))
	})
	type activation struct {
		at    time.Time
		isNew bool
	}
	var validActs []activation
	for _, k := range live {
		if k.valid() {
			validActs = append(validActs, activation{at: k.Timeline.ActivatesAt})
		}
	}
	if plan.Generate != nil {
		validActs = append(validActs, activation{at: plan.Generate.ActivatesAt, isNew: true})
	}
	nextValidAfter := func(t time.Time) (time.Time, bool) {
		var best time.Time
		found := false
		for _, v := range validActs {
			if v.at.After(t) && (!found || v.at.Before(best)) {
				best, found = v.at, true
			}
		}
		return best, found
	}
	signer, hasSigner := activeKey(live, now, false)
	for i := range live {
		k := &live[i]
		next, ok := nextValidAfter(k.Timeline.ActivatesAt)
		if !ok {
			continue
		}
		changed := false
		if k.Timeline.RetiresAt.After(next) {
			// History is not rewritten: a key that signed until now retires now at the
			// earliest, so the retention clock never starts before its last token.
			target := next
			if target.Before(now) {
				target = now
			}
			if k.Timeline.RetiresAt.After(target) {
				k.Timeline.RetiresAt = target
				changed = true
			}
		} else if hasSigner && k.KeyID == signer.KeyID && k.Timeline.RetiresAt.Before(next) && now.Before(k.Timeline.RetiresAt) {
			k.Timeline.RetiresAt = next
			changed = true
		}
		if changed && k.valid() {
			plan.Changed[k.KeyID] = true
		}
	}
	plan.Keys = live
	return plan
}

// activeKey is keymaterial.ActiveAt over the armed keys (only valid ones when validOnly).
func activeKey(keys []keyRecord, now time.Time, validOnly bool) (keyRecord, bool) {
	var cands []keymaterial.Candidate
	byID := map[string]keyRecord{}
	for _, k := range keys {
		if k.Pending || (validOnly && !k.valid()) {
			continue
		}
		cands = append(cands, keymaterial.Candidate{KeyID: k.KeyID, Timeline: k.Timeline})
		byID[k.KeyID] = k
	}
	c, ok := keymaterial.ActiveAt(cands, nil, now)
	if !ok {
		return keyRecord{}, false
	}
	return byID[c.KeyID], true
}

// keyView is the observable state of a set of keys at an instant: what status reports.
type keyView struct {
	Keys         []latchkeyv1.KeyStatus
	ActiveKeyID  string
	NextRotation *metav1.Time
	// Signer is the key whose timeline says it signs now, remembered keys included.
	Signer    keyRecord
	HasSigner bool
	// RequeueAfter is the time until the next transition (0: none).
	RequeueAfter time.Duration
}

// describeKeys derives status.keys, activeKeyID, nextRotationTime and the next transition.
func describeKeys(keys []keyRecord, pol keyPolicy, now time.Time) keyView {
	var v keyView
	a, hasA := activeKey(keys, now, true)
	v.Signer, v.HasSigner = activeKey(keys, now, false)
	if hasA {
		v.ActiveKeyID = a.KeyID
	}
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	hasSucc := false
	var succAt time.Time
	for _, k := range keys {
		st := latchkeyv1.KeyStatus{
			KeyID:       k.KeyID,
			SecretName:  k.SecretName,
			CreatedAt:   metaTime(k.Timeline.CreatedAt),
			ActivatesAt: metaTime(k.Timeline.ActivatesAt),
		}
		switch {
		case k.Pending || k.Timeline.ActivatesAt.After(now):
			st.State = latchkeyv1.KeyStateNext
			if k.valid() && (!hasSucc || k.Timeline.ActivatesAt.Before(succAt)) {
				hasSucc, succAt = true, k.Timeline.ActivatesAt
			}
		case v.HasSigner && k.KeyID == v.Signer.KeyID:
			st.State = latchkeyv1.KeyStateActive
		default:
			st.State = latchkeyv1.KeyStateRetired
		}
		if !k.Pending {
			st.RetiresAt = metaTime(k.Timeline.RetiresAt)
			st.ExpiresAt = metaTime(k.expiresAt(pol.Retention))
			consider(k.Timeline.RetiresAt)
			consider(k.expiresAt(pol.Retention))
		}
		consider(k.Timeline.ActivatesAt)
		v.Keys = append(v.Keys, st)
	}
	switch {
	case hasA:
		v.NextRotation = metaTime(a.Timeline.RetiresAt)
		if !hasSucc {
			consider(a.Timeline.RetiresAt.Add(-pol.PrePublish))
		}
	case hasSucc:
		v.NextRotation = metaTime(succAt)
	}
	slices.SortStableFunc(v.Keys, func(x, y latchkeyv1.KeyStatus) int {
		return cmp.Or(compareMetaTime(x.CreatedAt, y.CreatedAt), compareMetaTime(x.ActivatesAt, y.ActivatesAt),
			strings.Compare(x.KeyID, y.KeyID))
	})
	if !next.IsZero() {
		v.RequeueAfter = next.Sub(now)
	}
	return v
}

func metaTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.UTC())
	return &mt
}

func compareMetaTime(x, y *metav1.Time) int {
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return -1
	case y == nil:
		return 1
	}
	return x.Compare(y.Time)
}

// keySecretName is the deterministic name of the Secret of the seq-th key of a SigningKey:
// "<signingkey>-<seq>". Deterministic names make creation idempotent: two controllers that both
// decide to create the next key race on one name, and the API server lets only one win. A name
// that would exceed 253 characters is shortened and disambiguated by a hash of the full name.
func keySecretName(signingKey string, seq int) string {
	suffix := "-" + strconv.Itoa(seq)
	if len(signingKey)+len(suffix) <= validation.DNS1123SubdomainMaxLength {
		return signingKey + suffix
	}
	sum := sha256.Sum256([]byte(signingKey))
	h := hex.EncodeToString(sum[:])[:10]
	keep := validation.DNS1123SubdomainMaxLength - len(suffix) - 1 - len(h)
	return strings.TrimRight(signingKey[:keep], "-.") + "-" + h + suffix
}

// keySecretSeq is the sequence number at the end of a key Secret name, 0 if there is none.
func keySecretSeq(name string) int {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// validateSigningKey repeats the CRD's validation for objects that never went through an API
// server (the --dev manifests), so an impossible policy is reported, not acted on.
func validateSigningKey(sk *latchkeyv1.SigningKey) error {
	if l := len(sk.Name); l > validation.LabelValueMaxLength {
		return fmt.Errorf("name is %d characters; at most %d fit the %s label", l, validation.LabelValueMaxLength, latchkeyv1.LabelSigningKey)
	}
	switch sk.EffectiveAlgorithm() {
	case latchkeyv1.AlgorithmRS256, latchkeyv1.AlgorithmPS256, latchkeyv1.AlgorithmES256, latchkeyv1.AlgorithmEdDSA:
	default:
		return fmt.Errorf("algorithm %q is not one of RS256, PS256, ES256, EdDSA", sk.Spec.Algorithm)
	}
	if sk.RotationInterval() < time.Hour {
		return fmt.Errorf("rotationInterval must be at least 1h")
	}
	if sk.Retention() < time.Hour {
		return fmt.Errorf("retention must be at least 1h, the longest access-token lifetime")
	}
	if sk.PrePublish() < 0 {
		return fmt.Errorf("prePublish must not be negative")
	}
	if sk.PrePublish() >= sk.RotationInterval() {
		return fmt.Errorf("prePublish must be shorter than rotationInterval")
	}
	return nil
}
