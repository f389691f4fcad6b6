// Package users is the end-user directory of the login page: the people listed, with password
// hashes, in the users Secret (DESIGN.md "Users": --users-secret, key users.yaml).
//
// A Directory reads the Secret through a controller-runtime client.Reader (the manager's cache,
// or the --dev object store) and re-parses it only when its resourceVersion changes. Authenticate
// answers an unknown user and a wrong password with the same error after the same work, so that
// neither the answer nor the time tells an attacker which usernames exist (OAuth 2.1 §7.7,
// SECURITY-CASES 48). Brute-force throttling is the caller's job; this package only makes each
// attempt cost a full hash.
package users

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/revision"
)

// User is a person who can log in. It never carries the password hash.
type User struct {
	// Username is the name as written in the users file; use it as the sub claim.
	Username string
	// Email is the user's address, "" when the file has none.
	Email string
	// Name is the display name, "" when the file has none.
	Name string
	// Roles become the roles claim of the user's access tokens.
	Roles []string
}

func (u User) clone() User {
	u.Roles = slices.Clone(u.Roles)
	return u
}

// ErrInvalidCredentials is the one answer to a failed login, whether the username is unknown or
// the password wrong. Show it without saying which part was wrong.
var ErrInvalidCredentials = errors.New("invalid username or password")

// ErrSecretNotFound means the users Secret does not exist, or the server's cache cannot see it
// (the manager caches only Secrets labelled auth.latchkey.dev/secret-type). With it, and with
// ErrInvalidFile, nobody can log in: answer temporarily_unavailable and log the error.
var ErrSecretNotFound = errors.New("users secret not found")

// Directory is the users Secret, read through a client.Reader and parsed once per
// resourceVersion. It is safe for concurrent use.
type Directory struct {
	reader client.Reader
	key    types.NamespacedName
	// slots bounds concurrent password hashing: each argon2id verification holds up to
	// MaxArgon2Memory, and a burst of logins must not exhaust the pod's memory.
	slots chan struct{}
	// verify is passwordHash.verify; tests replace it to see which hash a login checked.
	verify func(h *passwordHash, password string) bool

	mu   sync.Mutex
	snap *snapshot
}

// snapshot is one parsed version of the Secret, or the error that version gave.
type snapshot struct {
	resourceVersion string
	data            []byte
	file            *File
	// dummy has the most common cost of the file's hashes; unknown usernames are verified
	// against it.
	dummy *passwordHash
	err   error
	// rev is the Reader's revision (revision.Source) when this snapshot was last confirmed
	// current; valid only when memo is set. Guarded by Directory.mu.
	rev  uint64
	memo bool
}

// NewDirectory returns a Directory for the Secret namespace/name, key users.yaml
// (latchkeyv1.UsersDataKey). It reads nothing until first used.
func NewDirectory(reader client.Reader, namespace, name string) *Directory {
	return &Directory{
		reader: reader,
		key:    types.NamespacedName{Namespace: namespace, Name: name},
		slots:  make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		verify: (*passwordHash).verify,
	}
}

// Authenticate returns the user when password is theirs. Any failure of the credentials returns
// ErrInvalidCredentials, after verifying the password against a hash: the user's, or for an
// unknown user a dummy of the same kind and cost. The username is matched case-insensitively and
// without surrounding spaces; the User returned carries the name as the file spells it.
//
// Other errors (ErrSecretNotFound, ErrInvalidFile, a failed read, ctx ending while waiting for a
// hashing slot) mean the directory cannot answer: say temporarily_unavailable, not "wrong
// password". The password is never logged or put in an error.
func (d *Directory) Authenticate(ctx context.Context, username, password string) (User, error) {
	snap, err := d.load(ctx)
	if err != nil {
		return User{}, err
	}
	username = strings.TrimSpace(username)
	// These fail the same way for every username, so answering at once says nothing about
	// which usernames exist.
	if username == "" || len(username) > MaxUsernameBytes || password == "" || len(password) > MaxPasswordBytes {
		return User{}, ErrInvalidCredentials
	}
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	case <-ctx.Done():
		return User{}, fmt.Errorf("authenticate: %w", ctx.Err())
	}

	rec, known := snap.file.find(username)
	h := snap.dummy
	if known {
		h = rec.hash
	}
	if ok := d.verify(h, password); !ok || !known {
		return User{}, ErrInvalidCredentials
	}
	return rec.user.clone(), nil
}

// Lookup returns the user named username (matched as Authenticate does) and whether there is
// one. The refresh grant uses it to re-check that the user is still in the Secret: false means
// the user has left (invalid_grant); an error means the directory cannot answer
// (temporarily_unavailable), which is not a reason to revoke anything.
func (d *Directory) Lookup(ctx context.Context, username string) (User, bool, error) {
	snap, err := d.load(ctx)
	if err != nil {
		return User{}, false, err
	}
	rec, ok := snap.file.find(strings.TrimSpace(username))
	if !ok {
		return User{}, false, nil
	}
	return rec.user.clone(), true, nil
}

// Check reads and parses the Secret and returns what Authenticate would return for it: nil, or
// the reason nobody can log in. Call it at start-up and from readiness to log a broken Secret
// early.
func (d *Directory) Check(ctx context.Context) error {
	_, err := d.load(ctx)
	return err
}

// load returns the parsed current version of the Secret, parsing it only when its
// resourceVersion (or, for a reader that sets none, its content) changed. A version that fails
// to parse is remembered too, so a broken Secret costs one parse, not one per login.
//
// When the Reader implements revision.Source, a snapshot confirmed at the current revision is
// returned without reading the Secret at all: the refresh grant looks its user up on every
// rotation, and through the --dev object store each read is a deep copy through JSON.
func (d *Directory) load(ctx context.Context) (*snapshot, error) {
	// The revision is read before the Secret (revision.Source).
	src, memo := revision.Of(d.reader)
	var rev uint64
	if memo {
		rev = src.Revision()
		d.mu.Lock()
		s := d.snap
		hit := s != nil && s.memo && s.rev == rev
		d.mu.Unlock()
		if hit {
			return s.result()
		}
	}
	var secret corev1.Secret
	if err := d.reader.Get(ctx, d.key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s (it must exist in the server's namespace and carry the label %s=%s)",
				ErrSecretNotFound, d.key, latchkeyv1.LabelSecretType, latchkeyv1.SecretTypeUsers)
		}
		return nil, fmt.Errorf("read users secret %s: %w", d.key, err)
	}
	data, ok := secret.Data[latchkeyv1.UsersDataKey]
	if !ok {
		// stringData is write-only on a real API server, but objects that never passed through
		// one (the --dev manifests) may still carry it.
		if s, found := secret.StringData[latchkeyv1.UsersDataKey]; found {
			data, ok = []byte(s), true
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.snap; s != nil && s.resourceVersion == secret.ResourceVersion &&
		(secret.ResourceVersion != "" || bytes.Equal(s.data, data)) {
		s.rev, s.memo = rev, memo
		return s.result()
	}
	s := &snapshot{resourceVersion: secret.ResourceVersion, data: bytes.Clone(data), rev: rev, memo: memo}
	switch {
	case !ok:
		s.err = fmt.Errorf("users secret %s: %w: no %s key", d.key, ErrInvalidFile, latchkeyv1.UsersDataKey)
	default:
		s.file, s.err = ParseFile(data)
		if s.err != nil {
			s.err = fmt.Errorf("users secret %s: %w", d.key, s.err)
		} else {
			s.dummy, s.err = dummyFor(s.file)
		}
	}
	d.snap = s
	return s.result()
}

func (s *snapshot) result() (*snapshot, error) {
	if s.err != nil {
		return nil, s.err
	}
	return s, nil
}

// dummyFor returns a dummy hash shaped like most of the file's hashes (the same kind, cost, salt
// and digest length), so that an unknown username costs what a typical known one does. A file
// with no users gets HashPassword's shape.
func dummyFor(f *File) (*passwordHash, error) {
	shape := &defaultHash
	counts := map[string]int{}
	best := 0
	for _, r := range f.records {
		p := r.hash.params()
		counts[p]++
		if counts[p] > best {
			best, shape = counts[p], r.hash
		}
	}
	return dummyLike(shape)
}
