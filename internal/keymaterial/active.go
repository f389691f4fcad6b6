package keymaterial

import (
	"slices"
	"time"
)

// Candidate is a key that might sign: its kid and timeline.
type Candidate struct {
	KeyID    string
	Timeline Timeline
}

// ActiveAt picks the key that signs at now: among candidates whose kid is not revoked and whose
// window [ActivatesAt, RetiresAt) contains now, the one that activated last (the newest key takes
// over at once when a rotation moves its activation forward). Ties go to the larger kid so every
// replica picks the same key. The controller uses it for status.activeKeyID and the token server
// to choose its signer, so the two cannot disagree.
func ActiveAt(cands []Candidate, revoked []string, now time.Time) (Candidate, bool) {
	var best Candidate
	found := false
	for _, c := range cands {
		if slices.Contains(revoked, c.KeyID) {
			continue
		}
		if now.Before(c.Timeline.ActivatesAt) || !now.Before(c.Timeline.RetiresAt) {
			continue
		}
		if !found || c.Timeline.ActivatesAt.After(best.Timeline.ActivatesAt) ||
			(c.Timeline.ActivatesAt.Equal(best.Timeline.ActivatesAt) && c.KeyID > best.KeyID) {
			best, found = c, true
		}
	}
	return best, found
}
