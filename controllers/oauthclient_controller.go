package controllers

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/audit"
)

// DefaultSecretGracePeriod is how long a rotated-out client secret stays valid when
// OAuthClientReconciler.SecretGracePeriod is zero.
const DefaultSecretGracePeriod = 24 * time.Hour

// externalSecretRecheck is how often a client whose External Secret is absent looks for it.
const externalSecretRecheck = time.Minute

// clientSecretBytes is the size of a generated client secret: 256 bits from crypto/rand.
const clientSecretBytes = 32

// Event reasons of the OAuthClient controller that are not condition reasons.
const (
	EventSecretUpdated         = "SecretUpdated"
	EventPreviousSecretExpired = "PreviousSecretExpired"
)

// OAuthClientReconciler validates OAuthClients, resolves their client_id across namespaces and
// gives confidential clients their credentials (DESIGN.md "OAuthClient").
//
// Conditions:
//   - Ready=True, reason Accepted: the token server serves the client. Ready=False carries the
//     reason that stops it: InvalidSpec, ClientIDConflict (an older OAuthClient owns the
//     client_id; the loser's Secret is never written and it never sees the winner's), or the
//     SecretReady reason of a client that needs a secret.
//   - SecretReady: True with NotRequired (public and private_key_jwt clients), SecretGenerated
//     (a Generated Secret is in place), SecretRotated (ditto, with a previous secret in its grace
//     period) or SecretFound (an External Secret is usable); False with SecretMissing,
//     SecretNotLabelled (an External Secret without the secret-type label, which the token
//     server cannot see), SecretInvalid or SecretNotOwned (a Generated client's Secret name is
//     taken by a Secret it does not control).
//   - AudienceShared=True, reason AudienceClaimedInNamespace (with a Warning Event when it
//     appears or changes): an audience the client names was named first by an OAuthClient in
//     another namespace (SECURITY-CASES item 92). The message names the audience and that
//     namespace only. It is a flag and leaves Ready alone: many clients legitimately need
//     tokens for one API, and who may name which audience is the operator's RBAC decision on
//     who may create OAuthClients. The condition is removed when nothing is shared any more.
//
// A Generated Secret that someone deletes is recreated with a NEW secret, with a Warning Event:
// the old secret is never resurrected (the controller does not keep a copy) and credentials are
// never invented for an External Secret (SECURITY-CASES item 91). Clients that use the old
// secret fail with invalid_client until they are given the new one.
type OAuthClientReconciler struct {
	client.Client
	// APIReader reads uncached, to tell a Secret that is absent from one that exists without the
	// secret-type label (the cache holds only labelled Secrets).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Issuer is written into Generated Secrets (issuer, and token-endpoint = Issuer + "/token").
	Issuer string
	// SecretGracePeriod is how long the previous client secret stays valid after a rotation
	// (DefaultSecretGracePeriod when zero).
	SecretGracePeriod time.Duration
	// Audit receives the client_secret_rotated audit record (nil: the controller-runtime log
	// and metrics registry, see auditor).
	Audit *audit.Logger
}

// IndexOAuthClientClientID is the extractor of the latchkeyv1.ClientIDIndex field index. The
// manager's cache and the --dev object store both register it, so that the controller (clientID
// uniqueness) and the token server (lookup by client_id) use one definition.
func IndexOAuthClientClientID(obj client.Object) []string {
	c, ok := obj.(*latchkeyv1.OAuthClient)
	if !ok {
		return nil
	}
	return []string{c.EffectiveClientID()}
}

// IndexOAuthClientAudience is the extractor of the latchkeyv1.AudienceIndex field index: the
// audiences of the client's access tokens. The manager's cache and the --dev object store both
// register it.
func IndexOAuthClientAudience(obj client.Object) []string {
	c, ok := obj.(*latchkeyv1.OAuthClient)
	if !ok {
		return nil
	}
	return tokenAudiences(c)
}

// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=oauthclients,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=oauthclients/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=auth.latchkey.dev,resources=oauthclients/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one OAuthClient's status and (Generated) credentials Secret up to date.
func (r *OAuthClientReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	log := logf.FromContext(ctx).WithValues("oauthClient", req.NamespacedName)
	var oc latchkeyv1.OAuthClient
	if err := r.Get(ctx, req.NamespacedName, &oc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !oc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	orig := oc.DeepCopy()
	oldReady := meta.FindStatusCondition(orig.Status.Conditions, latchkeyv1.ConditionReady)
	oldShared := meta.FindStatusCondition(orig.Status.Conditions, latchkeyv1.ConditionAudienceShared)
	patch := true
	defer func() {
		if !patch || equality.Semantic.DeepEqual(orig.Status, oc.Status) {
			return
		}
		// Optimistic lock: a reconcile that read a stale copy must not patch, or it would write
		// (and announce with an Event) again a condition change already made.
		perr := r.Status().Patch(ctx, &oc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case perr == nil:
			if c := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionReady); conditionChanged(oldReady, c) {
				typ := corev1.EventTypeWarning
				if c.Status == metav1.ConditionTrue {
					typ = corev1.EventTypeNormal
				}
				r.Recorder.Eventf(&oc, nil, typ, c.Reason, "Check", "Ready=%s: %s", c.Status, c.Message)
			}
			if c := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionAudienceShared); conditionChanged(oldShared, c) {
				r.Recorder.Eventf(&oc, nil, corev1.EventTypeWarning, c.Reason, "Check", "%s", c.Message)
			}
		case apierrors.IsNotFound(perr):
		case apierrors.IsConflict(perr):
			log.V(1).Info("Status patch lost a race, retrying", "error", perr.Error())
			if err == nil {
				result = ctrl.Result{RequeueAfter: retryAfterConflict}
			}
		case err == nil:
			err = fmt.Errorf("patch oauthclient status: %w", perr)
		}
	}()

	now := r.Clock.Now().UTC().Truncate(time.Second)
	id := oc.EffectiveClientID()
	oc.Status.ObservedGeneration = oc.Generation
	oc.Status.ClientID = id
	oc.Status.SecretName = ""
	if oc.UsesClientSecret() {
		oc.Status.SecretName = oc.EffectiveSecretName()
	}

	// Checked before anything can stop the reconcile, so the flag follows the spec even on a
	// client that is not served.
	if err := r.checkAudiences(ctx, &oc); err != nil {
		patch = false
		return ctrl.Result{}, err
	}

	if verr := validateOAuthClient(&oc); verr != nil {
		r.setConditions(&oc, metav1.ConditionFalse, latchkeyv1.ReasonInvalidSpec, verr.Error(), nil)
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("invalid oauthclient spec: %w", verr))
	}

	var claimants latchkeyv1.OAuthClientList
	if err := r.List(ctx, &claimants, client.MatchingFields{latchkeyv1.ClientIDIndex: id}); err != nil {
		patch = false
		return ctrl.Result{}, fmt.Errorf("list oauthclients by client id: %w", err)
	}
	cs := []claimant{claimantOf(&oc)}
	for i := range claimants.Items {
		o := &claimants.Items[i]
		self := o.Namespace == oc.Namespace && o.Name == oc.Name
		if self || !o.DeletionTimestamp.IsZero() || o.EffectiveClientID() != id {
			continue
		}
		cs = append(cs, claimantOf(o))
	}
	if w := clientIDWinner(cs); w.Namespace != oc.Namespace || w.Name != oc.Name {
		// The winner is not named: a client in another namespace learns only that the
		// client_id is taken, not by whom.
		msg := fmt.Sprintf("client_id %q is already claimed by an older OAuthClient; choose another spec.clientID", id)
		r.setConditions(&oc, metav1.ConditionFalse, latchkeyv1.ReasonClientIDConflict, msg,
			&metav1.Condition{Status: metav1.ConditionFalse, Reason: latchkeyv1.ReasonClientIDConflict, Message: "not checked: " + msg})
		oc.Status.PreviousSecretExpiresAt = nil
		return ctrl.Result{}, nil
	}

	if !oc.UsesClientSecret() {
		oc.Status.PreviousSecretExpiresAt = nil
		r.setConditions(&oc, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, "the client is served",
			&metav1.Condition{Status: metav1.ConditionTrue, Reason: latchkeyv1.ReasonNotRequired,
				Message: fmt.Sprintf("a %s client with %s needs no client secret", oc.Spec.Type, oc.EffectiveAuthMethod())})
		return ctrl.Result{}, nil
	}

	var sc secretCheck
	if oc.EffectiveSecretSource() == latchkeyv1.SecretSourceExternal {
		oc.Status.PreviousSecretExpiresAt = nil
		sc, err = r.checkExternal(ctx, &oc)
	} else {
		sc, err = r.reconcileGenerated(ctx, &oc, now)
	}
	if err != nil {
		patch = false
		return ctrl.Result{}, err
	}
	if sc.retry {
		patch = false
		log.V(1).Info("Credentials Secret changed meanwhile, retrying", "secret", oc.EffectiveSecretName())
		return ctrl.Result{RequeueAfter: retryAfterConflict}, nil
	}
	secretReady := &metav1.Condition{Status: metav1.ConditionFalse, Reason: sc.reason, Message: sc.msg}
	if sc.ok {
		secretReady.Status = metav1.ConditionTrue
		r.setConditions(&oc, metav1.ConditionTrue, latchkeyv1.ReasonAccepted, "the client is served", secretReady)
	} else {
		r.setConditions(&oc, metav1.ConditionFalse, sc.reason, sc.msg, secretReady)
	}
	return ctrl.Result{RequeueAfter: sc.requeueAfter}, nil
}

// checkAudiences sets or removes the AudienceShared condition: the other OAuthClients naming
// any of the client's audiences are found through the audience index, and sharedAudiences
// decides.
func (r *OAuthClientReconciler) checkAudiences(ctx context.Context, oc *latchkeyv1.OAuthClient) error {
	self := audienceClaimant{claimant: claimantOf(oc), Audiences: tokenAudiences(oc)}
	seen := map[client.ObjectKey]bool{client.ObjectKeyFromObject(oc): true}
	var others []audienceClaimant
	for _, aud := range self.Audiences {
		var list latchkeyv1.OAuthClientList
		if err := r.List(ctx, &list, client.MatchingFields{latchkeyv1.AudienceIndex: aud}); err != nil {
			return fmt.Errorf("list oauthclients by audience: %w", err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			if key := client.ObjectKeyFromObject(o); !seen[key] && o.DeletionTimestamp.IsZero() {
				seen[key] = true
				others = append(others, audienceClaimant{claimant: claimantOf(o), Audiences: tokenAudiences(o)})
			}
		}
	}
	shares := sharedAudiences(self, others)
	if len(shares) == 0 {
		meta.RemoveStatusCondition(&oc.Status.Conditions, latchkeyv1.ConditionAudienceShared)
		return nil
	}
	meta.SetStatusCondition(&oc.Status.Conditions, metav1.Condition{
		Type: latchkeyv1.ConditionAudienceShared, Status: metav1.ConditionTrue, Reason: latchkeyv1.ReasonAudienceClaimedInNamespace,
		Message: truncateMessage(audienceSharedMessage(shares)), ObservedGeneration: oc.Generation,
	})
	return nil
}

// secretCheck is the outcome of looking after a client's credentials Secret.
type secretCheck struct {
	ok           bool
	reason, msg  string
	requeueAfter time.Duration
	retry        bool // lost an optimistic-concurrency race
}

// checkExternal reads an External Secret; it never writes one.
func (r *OAuthClientReconciler) checkExternal(ctx context.Context, oc *latchkeyv1.OAuthClient) (secretCheck, error) {
	name := oc.EffectiveSecretName()
	key := client.ObjectKey{Namespace: oc.Namespace, Name: name}
	var s corev1.Secret
	err := r.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		// Not in the cache: absent, or present without the label that admits it to the cache.
		err = r.APIReader.Get(ctx, key, &s)
	}
	switch {
	case apierrors.IsNotFound(err):
		// A Secret created without the label raises no event in the narrowed cache, so look
		// again now and then to report SecretNotLabelled rather than SecretMissing forever.
		return secretCheck{reason: latchkeyv1.ReasonSecretMissing, requeueAfter: externalSecretRecheck,
			msg: fmt.Sprintf("External Secret %s does not exist; the client is not served until it does", name)}, nil
	case err != nil:
		return secretCheck{}, fmt.Errorf("get secret %s: %w", name, err)
	}
	ok, reason, msg := checkExternalSecret(&s, oc.EffectiveClientID())
	return secretCheck{ok: ok, reason: reason, msg: msg}, nil
}

// reconcileGenerated creates or updates a Generated Secret: first secret, rotation, expiry of the
// previous secret, and corrections of client-id, issuer and token-endpoint.
func (r *OAuthClientReconciler) reconcileGenerated(ctx context.Context, oc *latchkeyv1.OAuthClient, now time.Time) (secretCheck, error) {
	log := logf.FromContext(ctx).WithValues("oauthClient", client.ObjectKeyFromObject(oc))
	name := oc.EffectiveSecretName()
	key := client.ObjectKey{Namespace: oc.Namespace, Name: name}
	var existing *corev1.Secret
	var s corev1.Secret
	err := r.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, &s)
	}
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return secretCheck{}, fmt.Errorf("get secret %s: %w", name, err)
	case !controlledBy(&s, oc, "OAuthClient"):
		return secretCheck{reason: latchkeyv1.ReasonSecretNotOwned,
			msg: fmt.Sprintf("Secret %s exists and is not controlled by this OAuthClient; it is never overwritten (use secretSource: External to bring your own)", name)}, nil
	default:
		existing = &s
	}

	fresh, err := newClientSecret()
	if err != nil {
		return secretCheck{}, err
	}
	grace := r.SecretGracePeriod
	if grace <= 0 {
		grace = DefaultSecretGracePeriod
	}
	prevReady := meta.FindStatusCondition(oc.Status.Conditions, latchkeyv1.ConditionSecretReady)
	in := clientSecretInput{
		Existing: existing, ClientID: oc.EffectiveClientID(), Issuer: r.Issuer,
		RotateRequest: oc.Annotations[latchkeyv1.AnnotationRotateSecret], LastRotateRequest: oc.Status.LastSecretRotateRequest,
		Grace: grace, Now: now, HadSecret: prevReady != nil && prevReady.Status == metav1.ConditionTrue,
	}
	data, ann, out := planClientSecret(in, fresh)
	labels := map[string]string{
		latchkeyv1.LabelSecretType:  latchkeyv1.SecretTypeClientCredentials,
		latchkeyv1.LabelOAuthClient: labelValue(oc.Name),
		latchkeyv1.LabelManagedBy:   latchkeyv1.ManagedByValue,
	}

	if existing == nil {
		ns := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: oc.Namespace, Labels: labels, Annotations: ann},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		if err := controllerutil.SetControllerReference(oc, ns, r.Scheme); err != nil {
			return secretCheck{}, fmt.Errorf("own client secret: %w", err)
		}
		if err := r.Create(ctx, ns); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return secretCheck{retry: true}, nil
			}
			return secretCheck{}, fmt.Errorf("create secret %s: %w", name, err)
		}
		if out.Recreated {
			log.Info("Credentials Secret was deleted; generated a new client secret", "secret", name)
			r.Recorder.Eventf(oc, ns, corev1.EventTypeWarning, latchkeyv1.ReasonSecretGenerated, "Generate",
				"Secret %s was deleted: generated a NEW client secret (the old one is not restored); give it to the client", name)
		} else {
			log.Info("Generated client secret", "secret", name)
			r.Recorder.Eventf(oc, ns, corev1.EventTypeNormal, latchkeyv1.ReasonSecretGenerated, "Generate",
				"Generated a client secret in Secret %s", name)
		}
	} else if out.Write || !hasLabels(existing.Labels, labels) {
		us := existing.DeepCopy()
		us.Labels = copyMap(us.Labels)
		maps.Copy(us.Labels, labels)
		us.Annotations, us.Data = ann, data
		if err := r.Update(ctx, us); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				return secretCheck{retry: true}, nil
			}
			return secretCheck{}, fmt.Errorf("update secret %s: %w", name, err)
		}
		switch {
		case out.Generated:
			log.Info("Credentials Secret had no client secret; generated one", "secret", name)
			r.Recorder.Eventf(oc, us, corev1.EventTypeWarning, latchkeyv1.ReasonSecretGenerated, "Generate",
				"Secret %s had no client secret: generated a new one", name)
		case out.Rotated:
			log.Info("Rotated client secret", "secret", name, "previousExpiresAt", out.PreviousExpiresAt)
			r.Recorder.Eventf(oc, us, corev1.EventTypeNormal, latchkeyv1.ReasonSecretRotated, "Rotate",
				"Rotated the client secret in Secret %s; the previous one is accepted until %s", name, out.PreviousExpiresAt.Format(time.RFC3339))
			auditor(r.Audit).Emit(ctx, audit.Event{Name: audit.ClientSecretRotated, ClientID: oc.EffectiveClientID(), Attrs: []slog.Attr{
				slog.String("namespace", oc.Namespace), slog.String("oauthClient", oc.Name), slog.String("secret", name),
			}})
		}
		if out.PreviousDropped {
			log.Info("Previous client secret expired", "secret", name)
			r.Recorder.Eventf(oc, us, corev1.EventTypeNormal, EventPreviousSecretExpired, "Expire",
				"The previous client secret in Secret %s is no longer accepted", name)
		}
		if len(out.Fixed) > 0 {
			r.Recorder.Eventf(oc, us, corev1.EventTypeNormal, EventSecretUpdated, "Update",
				"Corrected %s in Secret %s", strings.Join(out.Fixed, ", "), name)
		}
	}

	if out.RotateHandled != "" {
		oc.Status.LastSecretRotateRequest = out.RotateHandled
	}
	sc := secretCheck{ok: true, reason: latchkeyv1.ReasonSecretGenerated, msg: fmt.Sprintf("Secret %s holds a generated client secret", name)}
	oc.Status.PreviousSecretExpiresAt = nil
	if !out.PreviousExpiresAt.IsZero() {
		oc.Status.PreviousSecretExpiresAt = metaTime(out.PreviousExpiresAt)
		sc.reason = latchkeyv1.ReasonSecretRotated
		sc.msg = fmt.Sprintf("Secret %s holds a rotated client secret; the previous one is accepted until %s", name, out.PreviousExpiresAt.Format(time.RFC3339))
		sc.requeueAfter = out.PreviousExpiresAt.Sub(now)
	}
	return sc, nil
}

// newClientSecret is 256 bits from crypto/rand, base64url without padding.
func newClientSecret() (string, error) {
	b := make([]byte, clientSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate client secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// setConditions sets Ready and, when given, SecretReady, both with the current generation.
func (r *OAuthClientReconciler) setConditions(oc *latchkeyv1.OAuthClient, status metav1.ConditionStatus, reason, msg string, secretReady *metav1.Condition) {
	meta.SetStatusCondition(&oc.Status.Conditions, metav1.Condition{
		Type: latchkeyv1.ConditionReady, Status: status, Reason: reason, Message: truncateMessage(msg), ObservedGeneration: oc.Generation,
	})
	if secretReady == nil {
		secretReady = &metav1.Condition{Status: status, Reason: reason, Message: msg}
	}
	secretReady.Type = latchkeyv1.ConditionSecretReady
	secretReady.ObservedGeneration = oc.Generation
	secretReady.Message = truncateMessage(secretReady.Message)
	meta.SetStatusCondition(&oc.Status.Conditions, *secretReady)
}

// SetupWithManager registers the controller. Besides its own OAuthClients and the Secrets it
// controls, it watches every cached Secret a client names (External Secrets, which it does not
// own), and requeues the other claimants of a client_id when a client is created, deleted or
// changes its clientID, so a loser becomes Ready as soon as the winner goes away, and likewise
// the other clients naming any of its audiences (old and new), so AudienceShared follows.
func (r *OAuthClientReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&latchkeyv1.OAuthClient{}).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.clientsForSecret)).
		Watches(&latchkeyv1.OAuthClient{}, handler.EnqueueRequestsFromMapFunc(r.clientsSharingID),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&latchkeyv1.OAuthClient{}, handler.EnqueueRequestsFromMapFunc(r.clientsSharingAudience),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("oauthclient").
		Complete(r)
}

// clientsForSecret maps a Secret to the OAuthClients in its namespace that use it: by the
// oauth-client label, and by spec.secretName (External Secrets carry no such label).
func (r *OAuthClientReconciler) clientsForSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	if n := obj.GetLabels()[latchkeyv1.LabelOAuthClient]; n != "" {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: obj.GetNamespace(), Name: n}})
	}
	var list latchkeyv1.OAuthClientList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "List OAuthClients for a Secret event failed", "secret", client.ObjectKeyFromObject(obj))
		return reqs
	}
	for i := range list.Items {
		if c := &list.Items[i]; c.EffectiveSecretName() == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	return reqs
}

// clientsSharingID maps an OAuthClient to the other OAuthClients that claim its client_id.
func (r *OAuthClientReconciler) clientsSharingID(ctx context.Context, obj client.Object) []reconcile.Request {
	c, ok := obj.(*latchkeyv1.OAuthClient)
	if !ok {
		return nil
	}
	var list latchkeyv1.OAuthClientList
	if err := r.List(ctx, &list, client.MatchingFields{latchkeyv1.ClientIDIndex: c.EffectiveClientID()}); err != nil {
		logf.FromContext(ctx).Error(err, "List OAuthClients by client id failed", "oauthClient", client.ObjectKeyFromObject(obj))
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if o := &list.Items[i]; o.Namespace != c.Namespace || o.Name != c.Name {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
		}
	}
	return reqs
}

// clientsSharingAudience maps an OAuthClient to the other OAuthClients that name any of its
// audiences. On an update the handler maps the old object too, so the clients of an audience
// the client dropped are requeued as well.
func (r *OAuthClientReconciler) clientsSharingAudience(ctx context.Context, obj client.Object) []reconcile.Request {
	c, ok := obj.(*latchkeyv1.OAuthClient)
	if !ok {
		return nil
	}
	self := client.ObjectKeyFromObject(c)
	seen := map[client.ObjectKey]bool{self: true}
	var reqs []reconcile.Request
	for _, aud := range tokenAudiences(c) {
		var list latchkeyv1.OAuthClientList
		if err := r.List(ctx, &list, client.MatchingFields{latchkeyv1.AudienceIndex: aud}); err != nil {
			logf.FromContext(ctx).Error(err, "List OAuthClients by audience failed", "oauthClient", self)
			return reqs
		}
		for i := range list.Items {
			if key := client.ObjectKeyFromObject(&list.Items[i]); !seen[key] {
				seen[key] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
		}
	}
	return reqs
}
