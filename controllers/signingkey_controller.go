package controllers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// retryAfterConflict is how soon a reconcile that lost an optimistic-concurrency race (Conflict,
// AlreadyExists) runs again. Losing such a race is normal with a stale cache or two controllers,
// so it is retried promptly rather than logged as an error with backoff.
const retryAfterConflict = time.Second

// SigningKeyReconciler keeps the keys of each SigningKey on their timeline (DESIGN.md
// "SigningKey"): it generates keys into owned Secrets, publishes their public halves in the
// "<name>-jwks" ConfigMap, rotates, retires, expires and revokes them, and reports status.
//
// Guarantees, each tested in signingkey_controller_test.go:
//   - a key is in the JWKS ConfigMap before it can sign (new keys are created pending and armed
//     only after publication; see signingkey_plan.go);
//   - a key leaves the JWKS only once it expires (retiresAt + retention), is revoked, or never
//     signed; a key whose Secret is deleted or corrupt stays published from status.keys and the
//     previous ConfigMap until it expires, and is replaced through pre-publication;
//   - every write is optimistic (deterministic Secret names, resourceVersion on updates and
//     deletes, an optimistic lock on the status patch), so two controllers racing on one
//     SigningKey leave one Active key and no duplicate kid, and a reconcile killed between two
//     writes converges when run again.
//
// The Ready condition is True when a valid key signs and the JWKS is published. Its reason is
// KeysReady, or, while a problem is remembered, KeySecretInvalid (a corrupt or foreign key
// Secret), KeySecretMissing (a key whose Secret is gone is still published from memory) or
// KeyRevoked (a revoked key was removed just now). It is False with InvalidSpec, NoActiveKey,
// KeySecretMissing or KeySecretInvalid when no valid key signs: the last two mean the signing
// key's Secret was lost and its replacement is being pre-published while the token server keeps
// signing with its in-memory copy.
type SigningKeyReconciler struct {
	client.Client
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Audit receives the signing_key_rotated audit record (nil: the controller-runtime log and
	// metrics registry, see auditor).
	Audit *audit.Logger
}

// Event reasons of the SigningKey controller (condition reasons live in api/v1alpha1).
const (
	EventKeyGenerated     = "KeyGenerated"
	EventKeyActivated     = "KeyActivated"
	EventKeyRetired       = "KeyRetired"
	EventKeyExpired       = "KeyExpired"
	EventKeyPromoted      = "KeyPromoted"
	EventRotateRequested  = "RotationRequested"
	EventReconcileFailure = "ReconcileError"
)

// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=signingkeys,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=signingkeys/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=signingkeys/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one SigningKey's keys, JWKS ConfigMap and status up to date and asks to run
// again at the next transition of the key timeline.
func (r *SigningKeyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	log := logf.FromContext(ctx).WithValues("signingKey", req.NamespacedName)
	var sk latchkeyv1.SigningKey
	if err := r.Get(ctx, req.NamespacedName, &sk); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := sk.DeepCopy()
	oldReady := meta.FindStatusCondition(orig.Status.Conditions, latchkeyv1.ConditionReady)

	// The status is patched once, here, and only from a reconcile that completed its writes or
	// found the spec invalid: a reconcile cut short by a conflict must not record a partial view.
	// The optimistic lock matters because status.keys is the memory of keys whose Secret was
	// lost: a controller with an older view must never overwrite it.
	patch := false
	defer func() {
		if !patch || equality.Semantic.DeepEqual(orig.Status, sk.Status) {
			return
		}
		perr := r.Status().Patch(ctx, &sk, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case perr == nil:
			if newReady := meta.FindStatusCondition(sk.Status.Conditions, latchkeyv1.ConditionReady); conditionChanged(oldReady, newReady) {
				r.eventForReady(&sk, newReady)
			}
		case apierrors.IsConflict(perr) || apierrors.IsNotFound(perr):
			log.V(1).Info("Status patch lost a race, retrying", "error", perr.Error())
			if err == nil {
				result = ctrl.Result{RequeueAfter: retryAfterConflict}
			}
		default:
			if err == nil {
				err = fmt.Errorf("patch signingkey status: %w", perr)
			}
		}
	}()

	now := r.Clock.Now().UTC().Truncate(time.Second)
	if verr := validateSigningKey(&sk); verr != nil {
		sk.Status.ObservedGeneration = sk.Generation
		r.setReady(&sk, metav1.ConditionFalse, latchkeyv1.ReasonInvalidSpec, verr.Error())
		patch = true
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("invalid signingkey spec: %w", verr))
	}

	res, done, rerr := r.reconcileKeys(ctx, &sk, now)
	if rerr != nil {
		r.Recorder.Eventf(&sk, nil, corev1.EventTypeWarning, EventReconcileFailure, "Reconcile", "%s", rerr.Error())
		return ctrl.Result{}, rerr
	}
	patch = done
	return res, nil
}

// reconcileKeys observes, plans and executes. done is false when it stopped early after losing
// a race; the status is then left alone and the reconcile retried.
func (r *SigningKeyReconciler) reconcileKeys(ctx context.Context, sk *latchkeyv1.SigningKey, now time.Time) (ctrl.Result, bool, error) {
	log := logf.FromContext(ctx).WithValues("signingKey", client.ObjectKeyFromObject(sk))
	retry := ctrl.Result{RequeueAfter: retryAfterConflict}

	var secrets corev1.SecretList
	if err := r.List(ctx, &secrets, client.InNamespace(sk.Namespace), client.MatchingLabels{
		latchkeyv1.LabelSigningKey: sk.Name, latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey,
	}); err != nil {
		return ctrl.Result{}, false, fmt.Errorf("list key secrets: %w", err)
	}
	cm := &corev1.ConfigMap{}
	cmName := sk.JWKSConfigMapName()
	switch err := r.Get(ctx, client.ObjectKey{Namespace: sk.Namespace, Name: cmName}, cm); {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return ctrl.Result{}, false, fmt.Errorf("get jwks configmap: %w", err)
	case !controlledBy(cm, sk, "SigningKey"):
		return ctrl.Result{}, false, fmt.Errorf("configmap %s exists and is not controlled by this SigningKey", cmName)
	}
	var published []jose.JSONWebKey
	if cm != nil {
		var perr error
		if published, perr = keymaterial.ParseJWKS([]byte(cm.Data[latchkeyv1.JWKSDataKey])); perr != nil {
			log.Info("JWKS ConfigMap unreadable, rebuilding it from the key Secrets", "configMap", cmName, "error", perr.Error())
		}
	}

	obs := observeKeys(sk, secrets.Items, published, now)
	if obs.WaitForCache > 0 {
		log.V(1).Info("A new key's Secret is not in the cache yet, waiting", "after", obs.WaitForCache)
		return ctrl.Result{RequeueAfter: obs.WaitForCache}, false, nil
	}
	pol := policyFor(sk)
	plan := planSigningKey(pol, obs.Records, now)
	keys := plan.Keys
	public := obs.Public

	// The new key, if any, is generated before any write: a failure here leaves nothing half
	// done.
	var key *keymaterial.Key
	if plan.Generate != nil {
		var err error
		if key, err = keymaterial.Generate(pol.Algorithm); err != nil {
			return ctrl.Result{}, false, err
		}
	}

	// 0. Revoked kids leave the JWKS before anything else is written (decision D6).
	if cm != nil && slices.ContainsFunc(published, func(k jose.JSONWebKey) bool { return slices.Contains(pol.Revoked, k.KeyID) }) {
		written, _, err := r.publishJWKS(ctx, sk, cm, keys, public)
		if err != nil {
			if apierrors.IsConflict(err) {
				return retry, false, nil
			}
			return ctrl.Result{}, false, err
		}
		cm = written
	}

	// 1. The new key is created pending: it cannot sign yet.
	var created *keyRecord
	if g := plan.Generate; g != nil {
		seq := obs.MaxSeq + 1
		pending := keymaterial.Timeline{CreatedAt: now, ActivatesAt: g.ActivatesAt, RetiresAt: g.ActivatesAt}
		secret, err := r.keySecret(sk, key, keySecretName(sk.Name, seq), pending, g.RotateRequest)
		if err != nil {
			return ctrl.Result{}, false, err
		}
		if err := r.Create(ctx, secret); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Another controller (or our own previous attempt, hidden by a stale cache) made
				// this key already: look again rather than make a second one.
				log.Info("Key Secret already exists, re-reading", "secret", secret.Name)
				return retry, false, nil
			}
			return ctrl.Result{}, false, fmt.Errorf("create key secret %s: %w", secret.Name, err)
		}
		log.Info("Generated key", "kid", key.KeyID, "secret", secret.Name, "activatesAt", g.ActivatesAt, "reason", g.Why)
		r.Recorder.Eventf(sk, secret, corev1.EventTypeNormal, EventKeyGenerated, "Generate",
			"Generated %s key %s in Secret %s (%s); it activates at %s", key.Algorithm, key.KeyID, secret.Name, g.Why, g.ActivatesAt.Format(time.RFC3339))
		obs.Secrets[secret.Name] = secret
		public = maps.Clone(public)
		public[key.KeyID] = key.PublicJWK()
		rec := keyRecord{KeyID: key.KeyID, SecretName: secret.Name, Seq: seq, Algorithm: key.Algorithm,
			Timeline: pending, RotateRequest: g.RotateRequest, Source: sourceSecret}
		rec.Timeline.RetiresAt = g.ActivatesAt.Add(pol.RotationInterval)
		created = &rec
		keys = append(slices.Clone(keys), rec)
	}

	// 2. Publish every key that may still verify a token, and the new one, before any key is
	// armed or moved forward. Revoked and expired keys leave here, before their Secrets go.
	_, changed, err := r.publishJWKS(ctx, sk, cm, keys, public)
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			log.V(1).Info("JWKS ConfigMap changed meanwhile, retrying", "error", err.Error())
			return retry, false, nil
		}
		return ctrl.Result{}, false, err
	}
	if changed {
		log.Info("Published JWKS", "configMap", cmName, "keys", len(keys))
	}

	// 3. Timeline updates: arm pending keys first (they are published now), then promotions,
	// pulled-forward activations and hand-overs.
	toUpdate := []keyRecord{}
	for _, k := range keys {
		if k.valid() && (plan.Changed[k.KeyID] || (created != nil && k.KeyID == created.KeyID)) {
			toUpdate = append(toUpdate, k)
		}
	}
	slices.SortStableFunc(toUpdate, func(a, b keyRecord) int {
		return boolRank(!wasPending(obs.Secrets[a.SecretName])) - boolRank(!wasPending(obs.Secrets[b.SecretName]))
	})
	for _, k := range toUpdate {
		s := obs.Secrets[k.SecretName].DeepCopy()
		s.Annotations = copyMap(s.Annotations)
		maps.Copy(s.Annotations, k.Timeline.Annotations())
		if k.RotateRequest != "" {
			s.Annotations[latchkeyv1.AnnotationRotateRequest] = k.RotateRequest
		}
		if err := r.Update(ctx, s); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				log.V(1).Info("Key Secret changed meanwhile, retrying", "secret", s.Name, "error", err.Error())
				return retry, false, nil
			}
			return ctrl.Result{}, false, fmt.Errorf("update key secret %s: %w", s.Name, err)
		}
	}
	if plan.Promoted != "" {
		r.Recorder.Eventf(sk, nil, corev1.EventTypeWarning, EventKeyPromoted, "Promote",
			"Key %s activates now: no other key can sign", plan.Promoted)
	}

	// 4. Deletions, with preconditions so a Secret that changed since it was read is kept.
	for _, rm := range plan.Removed {
		if rm.Key.SecretName != "" {
			if s := obs.Secrets[rm.Key.SecretName]; s != nil {
				if done, err := r.deleteSecret(ctx, s); err != nil || !done {
					return retry, false, err
				}
			}
		}
		switch rm.Why {
		case removeRevoked:
			log.Info("Revoked key removed", "kid", rm.Key.KeyID, "secret", rm.Key.SecretName)
			r.Recorder.Eventf(sk, nil, corev1.EventTypeWarning, latchkeyv1.ReasonKeyRevoked, "Revoke",
				"Key %s is revoked: removed from the JWKS and its Secret deleted", rm.Key.KeyID)
		case removeExpired:
			log.Info("Expired key removed", "kid", rm.Key.KeyID, "secret", rm.Key.SecretName)
			r.Recorder.Eventf(sk, nil, corev1.EventTypeNormal, EventKeyExpired, "Expire",
				"Key %s expired and left the JWKS", rm.Key.KeyID)
		default:
			log.Info("Key removed", "kid", rm.Key.KeyID, "secret", rm.Key.SecretName, "reason", string(rm.Why))
		}
	}
	for _, s := range obs.DeleteNow {
		if done, err := r.deleteSecret(ctx, s); err != nil || !done {
			return retry, false, err
		}
	}

	// 5. Status, derived from the keys as they now are.
	view := describeKeys(keys, pol, now)
	r.recordTransitions(ctx, sk, view)
	sk.Status.ObservedGeneration = sk.Generation
	sk.Status.JWKSConfigMapName = cmName
	sk.Status.ActiveKeyID = view.ActiveKeyID
	sk.Status.NextRotationTime = view.NextRotation
	sk.Status.Keys = view.Keys
	if pol.RotateRequest != "" && (plan.RotateRequestHandled != "" ||
		slices.ContainsFunc(keys, func(k keyRecord) bool { return k.RotateRequest == pol.RotateRequest })) {
		if sk.Status.LastRotateRequest != pol.RotateRequest {
			r.Recorder.Eventf(sk, nil, corev1.EventTypeNormal, EventRotateRequested, "Rotate",
				"Rotation requested (%s=%s) handled", latchkeyv1.AnnotationRotate, pol.RotateRequest)
		}
		sk.Status.LastRotateRequest = pol.RotateRequest
	}
	status, reason, msg := readiness(view, keys, obs.Issues, plan.Removed, pol.Retention)
	r.setReady(sk, status, reason, msg)
	return ctrl.Result{RequeueAfter: view.RequeueAfter}, true, nil
}

// readiness computes the Ready condition. See SigningKeyReconciler for the meaning of reasons.
func readiness(view keyView, keys []keyRecord, issues []keyIssue, removed []removal, retention time.Duration) (metav1.ConditionStatus, string, string) {
	var problems []string
	reason := ""
	for _, is := range issues {
		problems = append(problems, is.Message)
		if reason == "" || is.Reason == latchkeyv1.ReasonKeySecretInvalid {
			reason = is.Reason
		}
	}
	for _, k := range keys {
		if k.Source == sourceSecret {
			continue
		}
		problems = append(problems, fmt.Sprintf("key %s has no usable Secret and stays published until %s",
			k.KeyID, k.expiresAt(retention).Format(time.RFC3339)))
		if reason == "" {
			reason = cmpOr(k.Problem, latchkeyv1.ReasonKeySecretMissing)
		}
	}
	if view.ActiveKeyID == "" {
		msg := "no valid key signs"
		switch {
		case view.HasSigner && !view.Signer.valid():
			reason = cmpOr(view.Signer.Problem, latchkeyv1.ReasonKeySecretMissing)
			msg = fmt.Sprintf("the Secret of signing key %s is missing or invalid; the token server signs with its in-memory copy until the replacement activates", view.Signer.KeyID)
		case reason == "":
			reason = latchkeyv1.ReasonNoActiveKey
		}
		return metav1.ConditionFalse, reason, joinMessage(msg, problems)
	}
	msg := fmt.Sprintf("key %s signs; %d key(s) published", view.ActiveKeyID, len(keys))
	if reason == "" {
		for _, rm := range removed {
			if rm.Why == removeRevoked {
				reason = latchkeyv1.ReasonKeyRevoked
				problems = append(problems, fmt.Sprintf("revoked key %s removed", rm.Key.KeyID))
			}
		}
	}
	return metav1.ConditionTrue, cmpOr(reason, latchkeyv1.ReasonKeysReady), joinMessage(msg, problems)
}

func joinMessage(head string, details []string) string {
	if len(details) == 0 {
		return head
	}
	return head + "; " + strings.Join(details, "; ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// wasPending reports whether a key Secret, as read, had not been armed yet.
func wasPending(s *corev1.Secret) bool {
	if s == nil {
		return false
	}
	tl, err := keymaterial.ParseTimeline(s)
	return err == nil && tl.ActivatesAt.Equal(tl.RetiresAt)
}

// keySecret builds the Secret that stores key with the given timeline.
func (r *SigningKeyReconciler) keySecret(sk *latchkeyv1.SigningKey, key *keymaterial.Key, name string, tl keymaterial.Timeline, rotateRequest string) (*corev1.Secret, error) {
	data, err := key.SecretData()
	if err != nil {
		return nil, err
	}
	ann := tl.Annotations()
	if rotateRequest != "" {
		ann[latchkeyv1.AnnotationRotateRequest] = rotateRequest
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sk.Namespace, Annotations: ann,
			Labels: map[string]string{
				latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeSigningKey,
				latchkeyv1.LabelSigningKey: sk.Name,
				latchkeyv1.LabelManagedBy:  latchkeyv1.ManagedByValue,
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	if err := controllerutil.SetControllerReference(sk, s, r.Scheme); err != nil {
		return nil, fmt.Errorf("own key secret: %w", err)
	}
	return s, nil
}

// publishJWKS writes the JWKS ConfigMap when its content differs, and returns the ConfigMap as
// it now is and whether it wrote it.
// Keys are ordered by kid so that the same set always yields the same bytes.
func (r *SigningKeyReconciler) publishJWKS(ctx context.Context, sk *latchkeyv1.SigningKey, cm *corev1.ConfigMap, keys []keyRecord, public map[string]jose.JSONWebKey) (*corev1.ConfigMap, bool, error) {
	jwks := make([]jose.JSONWebKey, 0, len(keys))
	for _, k := range keys {
		if jwk, ok := public[k.KeyID]; ok {
			jwks = append(jwks, jwk)
		}
	}
	slices.SortFunc(jwks, func(a, b jose.JSONWebKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	doc, err := keymaterial.MarshalJWKS(jwks)
	if err != nil {
		return nil, false, err
	}
	labels := map[string]string{
		latchkeyv1.LabelJWKS:       "true",
		latchkeyv1.LabelSigningKey: sk.Name,
		latchkeyv1.LabelManagedBy:  latchkeyv1.ManagedByValue,
	}
	if cm == nil {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: sk.JWKSConfigMapName(), Namespace: sk.Namespace, Labels: labels},
			Data:       map[string]string{latchkeyv1.JWKSDataKey: string(doc)},
		}
		if err := controllerutil.SetControllerReference(sk, cm, r.Scheme); err != nil {
			return nil, false, fmt.Errorf("own jwks configmap: %w", err)
		}
		if err := r.Create(ctx, cm); err != nil {
			return nil, false, fmt.Errorf("create jwks configmap: %w", err)
		}
		return cm, true, nil
	}
	if bytes.Equal([]byte(cm.Data[latchkeyv1.JWKSDataKey]), doc) && hasLabels(cm.Labels, labels) {
		return cm, false, nil
	}
	cm = cm.DeepCopy()
	cm.Labels = copyMap(cm.Labels)
	maps.Copy(cm.Labels, labels)
	cm.Data = copyMap(cm.Data)
	cm.Data[latchkeyv1.JWKSDataKey] = string(doc)
	if err := r.Update(ctx, cm); err != nil {
		return nil, false, fmt.Errorf("update jwks configmap: %w", err)
	}
	return cm, true, nil
}

// deleteSecret deletes s unless it changed since it was read. done is false when it had.
func (r *SigningKeyReconciler) deleteSecret(ctx context.Context, s *corev1.Secret) (bool, error) {
	uid, rv := s.UID, s.ResourceVersion
	pre := client.Preconditions{}
	if uid != "" {
		pre.UID = &uid
	}
	if rv != "" {
		pre.ResourceVersion = &rv
	}
	err := r.Delete(ctx, s, pre)
	switch {
	case err == nil || apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsConflict(err):
		return false, nil
	default:
		return false, fmt.Errorf("delete key secret %s: %w", s.Name, err)
	}
}

// recordTransitions emits an Event for every key whose state changed since the last status.
// A key that becomes Active is also the audit event signing_key_rotated.
func (r *SigningKeyReconciler) recordTransitions(ctx context.Context, sk *latchkeyv1.SigningKey, view keyView) {
	before := map[string]latchkeyv1.KeyState{}
	for _, k := range sk.Status.Keys {
		before[k.KeyID] = k.State
	}
	for _, k := range view.Keys {
		was, known := before[k.KeyID]
		if known && was == k.State {
			continue
		}
		switch k.State {
		case latchkeyv1.KeyStateActive:
			r.Recorder.Eventf(sk, nil, corev1.EventTypeNormal, EventKeyActivated, "Activate", "Key %s is now Active", k.KeyID)
			auditor(r.Audit).Emit(ctx, audit.Event{Name: audit.KeyRotated, Attrs: []slog.Attr{
				slog.String("namespace", sk.Namespace), slog.String("signingKey", sk.Name), slog.String("keyID", k.KeyID),
			}})
		case latchkeyv1.KeyStateRetired:
			if known {
				r.Recorder.Eventf(sk, nil, corev1.EventTypeNormal, EventKeyRetired, "Retire",
					"Key %s is now Retired; it stays published until %s", k.KeyID, formatMetaTime(k.ExpiresAt))
			}
		}
	}
}

// eventForReady emits the Event that goes with a change of the Ready condition, so that problems
// (a lost or corrupt Secret) are announced once, when they appear, not at every reconcile.
func (r *SigningKeyReconciler) eventForReady(sk *latchkeyv1.SigningKey, c *metav1.Condition) {
	if c == nil {
		return
	}
	typ := corev1.EventTypeNormal
	switch c.Reason {
	case latchkeyv1.ReasonKeysReady:
	case latchkeyv1.ReasonKeyRevoked:
		return // announced by the revocation itself
	default:
		typ = corev1.EventTypeWarning
	}
	r.Recorder.Eventf(sk, nil, typ, c.Reason, "Check", "Ready=%s: %s", c.Status, c.Message)
}

func (r *SigningKeyReconciler) setReady(sk *latchkeyv1.SigningKey, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&sk.Status.Conditions, metav1.Condition{
		Type: latchkeyv1.ConditionReady, Status: status, Reason: reason, Message: truncateMessage(msg),
		ObservedGeneration: sk.Generation,
	})
}

// SetupWithManager registers the controller: it watches SigningKeys (spec and annotation
// changes; its own status patches do not wake it) and the Secrets and ConfigMaps they control.
func (r *SigningKeyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&latchkeyv1.SigningKey{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Owns(&corev1.ConfigMap{}).
		Named("signingkey").
		Complete(r)
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func formatMetaTime(t *metav1.Time) string {
	if t == nil {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

// conditionChanged reports whether a condition's status, reason or message changed.
func conditionChanged(old, cur *metav1.Condition) bool {
	if cur == nil {
		return false
	}
	return old == nil || old.Status != cur.Status || old.Reason != cur.Reason || old.Message != cur.Message
}

// truncateMessage keeps a condition message within the API's 32768-byte limit.
func truncateMessage(s string) string {
	const limit = 32000
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
