package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/keymaterial"
)

// keyIssue is a problem with a key Secret, reported in the Ready condition and as an Event.
type keyIssue struct {
	Reason  string // ReasonKeySecretMissing or ReasonKeySecretInvalid
	KeyID   string // may be empty when the Secret cannot be tied to a key
	Secret  string
	Message string
}

// keyObservation is what observeKeys learned from the key Secrets, status.keys and the JWKS
// ConfigMap.
type keyObservation struct {
	Records []keyRecord
	// Public holds the public JWK of every record.
	Public map[string]jose.JSONWebKey
	// Secrets are the Secrets behind records (valid ones, and corrupt ones kept until their
	// key expires), by name, for updates and deletions with preconditions.
	Secrets map[string]*corev1.Secret
	Issues  []keyIssue
	// DeleteNow are corrupt Secrets the SigningKey controls that no remembered key explains.
	// They can never sign, so they are deleted at once (cert-manager does the same).
	DeleteNow []*corev1.Secret
	// MaxSeq is the highest key sequence number in use, by a Secret or in status.keys.
	MaxSeq int
	// WaitForCache > 0 means a key created moments ago is in status.keys but its Secret is not
	// in the cache yet: act on nothing and look again after this long.
	WaitForCache time.Duration
}

// observeKeys turns the SigningKey's labelled Secrets, its status and the keys of its current
// JWKS ConfigMap into planner records. The Secrets are the record of truth; status.keys and the
// ConfigMap are the memory of keys whose Secret was lost, so that their public keys stay
// published while tokens they signed may be live (SECURITY-CASES item 88).
//
// A Secret the SigningKey does not control (a wrong owner) is never used and never touched. A
// corrupt Secret it controls (bad PEM, kid not the key's thumbprint, bad timeline) is kept while
// the key it held is remembered, so the problem stays visible, and deleted when that key expires.
func observeKeys(sk *latchkeyv1.SigningKey, secrets []corev1.Secret, published []jose.JSONWebKey, now time.Time) keyObservation {
	obs := keyObservation{Public: map[string]jose.JSONWebKey{}, Secrets: map[string]*corev1.Secret{}}
	seen := map[string]bool{}     // kids with a valid Secret
	corrupt := map[string]error{} // owned, unusable Secrets by name
	foreign := map[string]bool{}  // Secrets with our labels that we do not control
	byName := map[string]*corev1.Secret{}
	validByName := map[string]string{} // Secret name -> kid

	slices.SortFunc(secrets, func(a, b corev1.Secret) int { return strings.Compare(a.Name, b.Name) })
	for i := range secrets {
		s := &secrets[i]
		byName[s.Name] = s
		obs.MaxSeq = max(obs.MaxSeq, keySecretSeq(s.Name))
		if !controlledBy(s, sk, "SigningKey") {
			foreign[s.Name] = true
			obs.Issues = append(obs.Issues, keyIssue{
				Reason: latchkeyv1.ReasonKeySecretInvalid, Secret: s.Name,
				Message: fmt.Sprintf("Secret %s carries this SigningKey's labels but is not controlled by it; it is never used", s.Name),
			})
			continue
		}
		key, err := keymaterial.Decode(s)
		var tl keymaterial.Timeline
		if err == nil {
			tl, err = keymaterial.ParseTimeline(s)
		}
		if err == nil && seen[key.KeyID] {
			err = fmt.Errorf("%w: kid %s is already held by another Secret", keymaterial.ErrInvalid, key.KeyID)
		}
		if err != nil {
			corrupt[s.Name] = err
			continue
		}
		seen[key.KeyID] = true
		validByName[s.Name] = key.KeyID
		obs.Secrets[s.Name] = s
		obs.Public[key.KeyID] = key.PublicJWK()
		obs.Records = append(obs.Records, keyRecord{
			KeyID: key.KeyID, SecretName: s.Name, Seq: keySecretSeq(s.Name), Algorithm: key.Algorithm,
			Timeline: tl, Pending: tl.ActivatesAt.Equal(tl.RetiresAt),
			RotateRequest: s.Annotations[latchkeyv1.AnnotationRotateRequest], Source: sourceSecret,
		})
	}

	inJWKS := map[string]jose.JSONWebKey{}
	for _, k := range published {
		if k.KeyID != "" {
			inJWKS[k.KeyID] = k
		}
	}

	claimed := map[string]bool{}
	remembered := map[string]bool{}
	for _, e := range sk.Status.Keys {
		obs.MaxSeq = max(obs.MaxSeq, keySecretSeq(e.SecretName))
		if seen[e.KeyID] || remembered[e.KeyID] || e.ActivatesAt == nil || slices.Contains(sk.Spec.RevokedKeyIDs, e.KeyID) {
			// A revoked key is forgotten at once; one with a valid Secret is described by it.
			continue
		}
		rec := keyRecord{KeyID: e.KeyID, Seq: keySecretSeq(e.SecretName), Source: sourceMemory,
			Problem: latchkeyv1.ReasonKeySecretMissing}
		if e.CreatedAt != nil {
			rec.Timeline.CreatedAt = e.CreatedAt.UTC()
		}
		rec.Timeline.ActivatesAt = e.ActivatesAt.UTC()
		if e.RetiresAt == nil {
			rec.Pending = true
			rec.Timeline.RetiresAt = rec.Timeline.ActivatesAt
		} else {
			rec.Timeline.RetiresAt = e.RetiresAt.UTC()
		}
		var issue *keyIssue
		switch {
		case e.SecretName == "":
			// Already known to be lost.
		case corrupt[e.SecretName] != nil:
			rec.Problem = latchkeyv1.ReasonKeySecretInvalid
			rec.SecretName = e.SecretName
			issue = &keyIssue{Reason: rec.Problem, KeyID: e.KeyID, Secret: e.SecretName,
				Message: fmt.Sprintf("Secret %s of key %s is invalid: %v", e.SecretName, e.KeyID, corrupt[e.SecretName])}
		case foreign[e.SecretName]:
			// Named in status so the problem stays visible, but never in obs.Secrets: the
			// controller does not delete what it does not control.
			rec.Problem = latchkeyv1.ReasonKeySecretInvalid
			rec.SecretName = e.SecretName
			issue = &keyIssue{Reason: rec.Problem, KeyID: e.KeyID, Secret: e.SecretName,
				Message: fmt.Sprintf("Secret %s of key %s is not controlled by this SigningKey", e.SecretName, e.KeyID)}
		case byName[e.SecretName] == nil && rec.Timeline.CreatedAt.Add(staleCacheGrace).After(now):
			// Created moments ago: the Secret informer is probably behind the SigningKey one.
			obs.WaitForCache = max(obs.WaitForCache, rec.Timeline.CreatedAt.Add(staleCacheGrace).Sub(now))
			continue
		default:
			issue = &keyIssue{Reason: rec.Problem, KeyID: e.KeyID, Secret: e.SecretName,
				Message: fmt.Sprintf("Secret %s of key %s was deleted", e.SecretName, e.KeyID)}
			if kid, ok := validByName[e.SecretName]; ok {
				issue.Message = fmt.Sprintf("Secret %s of key %s now holds key %s", e.SecretName, e.KeyID, kid)
			}
		}
		jwk, ok := inJWKS[e.KeyID]
		if !ok {
			// Neither its Secret nor the JWKS holds the public key: there is nothing to publish.
			obs.Issues = append(obs.Issues, keyIssue{Reason: rec.Problem, KeyID: e.KeyID, Secret: e.SecretName,
				Message: fmt.Sprintf("key %s is lost: neither its Secret nor the JWKS ConfigMap holds it", e.KeyID)})
			continue
		}
		if issue != nil {
			obs.Issues = append(obs.Issues, *issue)
		}
		if corrupt[rec.SecretName] != nil {
			claimed[rec.SecretName] = true
			obs.Secrets[rec.SecretName] = byName[rec.SecretName]
		}
		rec.Algorithm = latchkeyv1.SigningAlgorithm(jwk.Algorithm)
		obs.Public[e.KeyID] = publicSigJWK(jwk)
		obs.Records = append(obs.Records, rec)
		remembered[e.KeyID] = true
	}

	// Keys only the ConfigMap knows: see sourceOrphan.
	kids := make([]string, 0, len(inJWKS))
	for kid := range inJWKS {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	for _, kid := range kids {
		if seen[kid] || remembered[kid] || slices.Contains(sk.Spec.RevokedKeyIDs, kid) {
			continue
		}
		jwk := inJWKS[kid]
		obs.Public[kid] = publicSigJWK(jwk)
		obs.Records = append(obs.Records, keyRecord{
			KeyID: kid, Algorithm: latchkeyv1.SigningAlgorithm(jwk.Algorithm), Source: sourceOrphan,
			Timeline: keymaterial.Timeline{CreatedAt: now, ActivatesAt: now, RetiresAt: now},
		})
	}

	names := make([]string, 0, len(corrupt))
	for name := range corrupt {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if claimed[name] {
			continue
		}
		obs.DeleteNow = append(obs.DeleteNow, byName[name])
		obs.Issues = append(obs.Issues, keyIssue{Reason: latchkeyv1.ReasonKeySecretInvalid, Secret: name,
			Message: fmt.Sprintf("Secret %s is invalid and holds no known key; deleted: %v", name, corrupt[name])})
	}
	return obs
}

// publicSigJWK is the public half of a JWK with use "sig", whatever the ConfigMap said.
func publicSigJWK(k jose.JSONWebKey) jose.JSONWebKey {
	pub := k.Public()
	pub.Use = "sig"
	return pub
}
