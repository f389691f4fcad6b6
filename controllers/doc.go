// Package controllers holds Latchkey's two reconcilers: SigningKeyReconciler, which generates,
// publishes, rotates, retires and revokes signing keys, and OAuthClientReconciler, which
// validates OAuth clients, resolves client_id ownership across namespaces and manages client
// credentials Secrets.
//
// Each reconciler reads, decides with pure functions of (spec, observed state, now) that live in
// the *_plan.go files and are table-tested, writes with optimistic concurrency, and patches its
// status once. Both run under a controller-runtime manager (SetupWithManager) or, in --dev,
// driven directly by a loop that calls Reconcile over controller-runtime's fake client and
// honours RequeueAfter; Reconcile depends only on the reconciler's fields and, for OAuthClients,
// on the latchkeyv1.ClientIDIndex and latchkeyv1.AudienceIndex field indexes
// (IndexOAuthClientClientID, IndexOAuthClientAudience) registered by the caller.
//
// Choices made where DESIGN.md leaves room:
//
//   - A new key is written "pending" (a zero-length signing window) and armed only after the JWKS
//     ConfigMap holding its public key has been written, so no key can sign before it is
//     published, whatever the order in which a crash interrupts the writes. The first key, and
//     the replacement of a revoked Active key when no Next key exists, activate at once: nothing
//     signs, so there is nothing to pre-publish against and every second without a key is an
//     outage. Every other new key is pre-published for spec.prePublish.
//   - A rotate annotation while a Next key already exists brings that key forward (it has never
//     signed) instead of generating another. A changed spec.algorithm rotates through
//     pre-publication.
//   - A key whose Secret is deleted, corrupt or not controlled by the SigningKey stays published
//     from status.keys and the previous ConfigMap until it expires, is replaced through
//     pre-publication, and is reported: Ready=False (KeySecretMissing or KeySecretInvalid) while
//     it is the key that should sign, Ready=True with that reason while it is merely remembered.
//     A corrupt Secret the SigningKey controls is kept until its key expires (so the problem stays
//     visible and a restore from backup is picked up), then deleted; a foreign one is never
//     touched. A key the ConfigMap publishes but nothing else knows is kept for one retention.
//   - A Generated client Secret that someone deletes is recreated with a NEW secret and a Warning
//     Event (the old secret is never resurrected). Only one previous secret is kept: a second
//     rotation within the grace period ends the first one's grace.
//   - The loser of a client_id conflict gets no credentials Secret written and is not told which
//     OAuthClient won. Objects without UID or creation time (--dev) tie-break on namespace/name.
package controllers

import "sigs.k8s.io/controller-runtime/pkg/reconcile"

var (
	_ reconcile.Reconciler = (*SigningKeyReconciler)(nil)
	_ reconcile.Reconciler = (*OAuthClientReconciler)(nil)
)
