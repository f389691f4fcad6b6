package users

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// Reference hashes made by other implementations, so that the parser and verifier are checked
// against the real formats and not only against themselves.
const (
	// config/samples/users.yaml: alice, password "latchkey-demo" (bcrypt, cost 10).
	sampleAliceHash     = "$2a$10$Jqi2lZ39ZyirSBRACgKkbOaeePAAcb7FrCXYbTeb16jeoDQtrwErO"
	sampleAlicePassword = "latchkey-demo"
	// The reference argon2 CLI (Debian package argon2, 0~20171227):
	//   echo -n "correct horse battery staple" | argon2 latchkeysalt16by -id -t 2 -k 19456 -p 1 -l 32 -e
	refArgonHash     = "$argon2id$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ"
	refArgonPassword = "correct horse battery staple"
	//   echo -n "correct horse battery staple" | argon2 saltsaltsaltsalt -id -t 3 -k 65536 -p 4 -l 32 -e
	refArgonHash4Lanes = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0c2FsdA$opK/12lewr2z5YpUKucJCUXASikIGYN+qjR3vL2e8go"
)

// bobHash is a bcrypt hash of "bob-password" at the minimum cost, made once for the package.
var bobHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("bob-password"), MinBcryptCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

func usersYAML() string {
	return fmt.Sprintf(`# the users of the tests
- username: alice
  passwordHash: %q
  email: alice@example.com
  name: Alice Liddell
  roles: [admin, user]
- username: carol
  passwordHash: %q
  roles: [user]
- username: bob
  passwordHash: %q
`, sampleAliceHash, refArgonHash, bobHash())
}

func usersSecret(data string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "latchkey-users", Namespace: "latchkey-system",
			Labels: map[string]string{latchkeyv1.LabelSecretType: latchkeyv1.SecretTypeUsers},
		},
		Data: map[string][]byte{latchkeyv1.UsersDataKey: []byte(data)},
	}
}

func newTestDirectory(t *testing.T, objs ...client.Object) (*Directory, client.Client) {
	t.Helper()
	c := fake.NewClientBuilder().WithObjects(objs...).Build()
	return NewDirectory(c, "latchkey-system", "latchkey-users"), c
}

func TestAuthenticate(t *testing.T) {
	d, _ := newTestDirectory(t, usersSecret(usersYAML()))
	tests := []struct {
		name     string
		username string
		password string
		want     string // the username returned, "" for ErrInvalidCredentials
	}{
		{"alice logs in with the sample bcrypt hash", "alice", sampleAlicePassword, "alice"},
		{"carol logs in with the reference argon2id hash", "carol", refArgonPassword, "carol"},
		{"bob logs in with a Go bcrypt hash", "bob", "bob-password", "bob"},
		{"the username is matched case-insensitively and returned as written", "ALICE", sampleAlicePassword, "alice"},
		{"surrounding spaces of the username are ignored", "  alice ", sampleAlicePassword, "alice"},
		{"a wrong password fails", "alice", "latchkey-demo!", ""},
		{"the password is case-sensitive", "alice", "Latchkey-demo", ""},
		{"a password with a trailing space fails", "alice", sampleAlicePassword + " ", ""},
		{"another user's password fails", "alice", "bob-password", ""},
		{"an unknown user fails", "mallory", sampleAlicePassword, ""},
		{"an empty username fails", "", sampleAlicePassword, ""},
		{"an empty password fails", "alice", "", ""},
		{"a password over the limit fails", "carol", strings.Repeat("a", MaxPasswordBytes+1), ""},
		{"a username over the limit fails", strings.Repeat("a", MaxUsernameBytes+1), "x", ""},
		{"a username with an embedded space fails", "al ice", sampleAlicePassword, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := d.Authenticate(context.Background(), tt.username, tt.password)
			if tt.want == "" {
				// The same value, not only the same kind, so no caller can tell the cases apart.
				if err != ErrInvalidCredentials { //nolint:errorlint // identity is the point
					t.Fatalf("Authenticate error = %v, want exactly ErrInvalidCredentials", err)
				}
				if u.Username != "" || u.Roles != nil {
					t.Fatalf("failed Authenticate returned a user: %+v", u)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if u.Username != tt.want {
				t.Fatalf("Username = %q, want %q", u.Username, tt.want)
			}
		})
	}
}

func TestAuthenticateReturnsTheUsersClaims(t *testing.T) {
	d, _ := newTestDirectory(t, usersSecret(usersYAML()))
	u, err := d.Authenticate(context.Background(), "alice", sampleAlicePassword)
	if err != nil {
		t.Fatal(err)
	}
	want := User{Username: "alice", Email: "alice@example.com", Name: "Alice Liddell", Roles: []string{"admin", "user"}}
	if fmt.Sprint(u) != fmt.Sprint(want) {
		t.Fatalf("user = %+v, want %+v", u, want)
	}
	// The roles are a copy: a caller that edits them changes nothing for the next login.
	u.Roles[0] = "root"
	again, _, err := d.Lookup(context.Background(), "alice")
	if err != nil || again.Roles[0] != "admin" {
		t.Fatalf("roles changed through a returned user: %+v, %v", again, err)
	}
}

func TestBcryptPasswordOver72BytesIsRefusedAlthoughItsPrefixMatches(t *testing.T) {
	long := strings.Repeat("x", 72)
	h, err := bcrypt.GenerateFromPassword([]byte(long), MinBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := newTestDirectory(t, usersSecret(fmt.Sprintf("- {username: dave, passwordHash: %q}\n", h)))
	if _, err := d.Authenticate(context.Background(), "dave", long); err != nil {
		t.Fatalf("the 72-byte password must work: %v", err)
	}
	if _, err := d.Authenticate(context.Background(), "dave", long+"suffix"); err != ErrInvalidCredentials { //nolint:errorlint
		t.Fatalf("a longer password with the same prefix: %v, want ErrInvalidCredentials", err)
	}
}

// TestUnknownUserCostsWhatAKnownUserCosts checks the structure that makes the times equal: an
// unknown username is verified once, against a dummy with the cost of the known users' hashes.
// (No clock is read: timing assertions flake on shared machines.)
func TestUnknownUserCostsWhatAKnownUserCosts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		users string
		want  string
	}{
		{"all bcrypt", fmt.Sprintf("- {username: alice, passwordHash: %q}\n- {username: bob, passwordHash: %q}\n", sampleAliceHash, bobHash()), "bcrypt/10"},
		{"all argon2id", fmt.Sprintf("- {username: carol, passwordHash: %q}\n", refArgonHash), "argon2id/m=19456,t=2,p=1/16/32"},
		{"mostly argon2id with four lanes", fmt.Sprintf("- {username: alice, passwordHash: %q}\n- {username: c1, passwordHash: %q}\n- {username: c2, passwordHash: %q}\n",
			sampleAliceHash, refArgonHash4Lanes, refArgonHash4Lanes), "argon2id/m=65536,t=3,p=4/16/32"},
		{"no users at all", "[]", "argon2id/m=19456,t=2,p=1/16/32"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newTestDirectory(t, usersSecret(tt.users))
			var checked []string
			d.verify = func(h *passwordHash, password string) bool {
				checked = append(checked, h.params())
				return h.verify(password)
			}
			_, err := d.Authenticate(context.Background(), "nobody", "some password")
			if err != ErrInvalidCredentials { //nolint:errorlint
				t.Fatalf("unknown user: %v", err)
			}
			if len(checked) != 1 || checked[0] != tt.want {
				t.Fatalf("an unknown user verified %q, want one verification of %q", checked, tt.want)
			}
		})
	}
}

func TestDummyHashesRunTheFullComparison(t *testing.T) {
	bc, err := parseHash(bobHash())
	if err != nil {
		t.Fatal(err)
	}
	d, err := dummyLike(bc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseHash(d.encoded); err != nil {
		t.Fatalf("the bcrypt dummy %q does not parse: %v", d.encoded, err)
	}
	// A parse error would return early and cheaply; only a mismatch proves the hashing ran.
	if err := bcrypt.CompareHashAndPassword([]byte(d.encoded), []byte("bob-password")); !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		t.Fatalf("comparing with the bcrypt dummy: %v, want a mismatch", err)
	}
	if cost, err := bcrypt.Cost([]byte(d.encoded)); err != nil || cost != MinBcryptCost {
		t.Fatalf("dummy cost = %d, %v", cost, err)
	}
	ar, err := parseHash(refArgonHash)
	if err != nil {
		t.Fatal(err)
	}
	da, err := dummyLike(ar)
	if err != nil {
		t.Fatal(err)
	}
	if da.params() != ar.params() || da.verify(refArgonPassword) {
		t.Fatalf("argon2id dummy %s must have the shape %s and match nothing", da.params(), ar.params())
	}
	other, _ := dummyLike(ar)
	if string(other.salt) == string(da.salt) {
		t.Fatal("two dummies share a salt")
	}
}

func TestLookup(t *testing.T) {
	d, c := newTestDirectory(t, usersSecret(usersYAML()))
	ctx := context.Background()
	if u, ok, err := d.Lookup(ctx, "carol"); err != nil || !ok || u.Username != "carol" || u.Roles[0] != "user" {
		t.Fatalf("Lookup(carol) = %+v, %v, %v", u, ok, err)
	}
	if u, ok, err := d.Lookup(ctx, "Carol"); err != nil || !ok || u.Username != "carol" {
		t.Fatalf("Lookup(Carol) = %+v, %v, %v", u, ok, err)
	}
	if _, ok, err := d.Lookup(ctx, "mallory"); err != nil || ok {
		t.Fatalf("Lookup(mallory) = %v, %v; want not found and no error", ok, err)
	}

	// carol leaves the Secret: the refresh-time re-check must see it.
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: "latchkey-system", Name: "latchkey-users"}, &s); err != nil {
		t.Fatal(err)
	}
	s.Data[latchkeyv1.UsersDataKey] = fmt.Appendf(nil, "- {username: alice, passwordHash: %q}\n", sampleAliceHash)
	if err := c.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Lookup(ctx, "carol"); err != nil || ok {
		t.Fatalf("after carol left: Lookup = %v, %v", ok, err)
	}
	if _, err := d.Authenticate(ctx, "carol", refArgonPassword); err != ErrInvalidCredentials { //nolint:errorlint
		t.Fatalf("after carol left: Authenticate = %v", err)
	}
}

func TestDirectoryParsesOncePerResourceVersion(t *testing.T) {
	d, c := newTestDirectory(t, usersSecret(usersYAML()))
	ctx := context.Background()
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	first := d.snap
	if _, _, err := d.Lookup(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if d.snap != first {
		t.Fatal("an unchanged Secret was parsed again")
	}
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKeyFromObject(usersSecret("")), &s); err != nil {
		t.Fatal(err)
	}
	s.Labels["touched"] = "yes" // a new resourceVersion, the same content
	if err := c.Update(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if err := d.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if d.snap == first || d.snap.resourceVersion == first.resourceVersion {
		t.Fatal("a new resourceVersion was not picked up")
	}
}

// failingReader is a client.Reader whose Get fails with err, to stand for an API outage.
type failingReader struct {
	client.Reader
	err error
}

func (r failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return r.err
}

// stubReader returns a fixed Secret without a resourceVersion, like a reader that sets none.
type stubReader struct {
	client.Reader
	mu     sync.Mutex
	secret corev1.Secret
}

func (r *stubReader) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func TestDirectoryErrorsAreDistinct(t *testing.T) {
	outage := errors.New("connection refused")
	tests := []struct {
		name   string
		reader func(t *testing.T) client.Reader
		want   error
	}{
		{"a missing Secret", func(t *testing.T) client.Reader {
			return fake.NewClientBuilder().Build()
		}, ErrSecretNotFound},
		{"a Secret without the users.yaml key", func(t *testing.T) client.Reader {
			s := usersSecret("")
			s.Data = map[string][]byte{"other": []byte("x")}
			return fake.NewClientBuilder().WithObjects(s).Build()
		}, ErrInvalidFile},
		{"a corrupt users file", func(t *testing.T) client.Reader {
			return fake.NewClientBuilder().WithObjects(usersSecret("- username: [oops")).Build()
		}, ErrInvalidFile},
		{"a users file with a bad hash", func(t *testing.T) client.Reader {
			return fake.NewClientBuilder().WithObjects(usersSecret("- {username: a, passwordHash: plaintext}")).Build()
		}, ErrInvalidFile},
		{"an API outage", func(t *testing.T) client.Reader {
			return failingReader{err: outage}
		}, outage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDirectory(tt.reader(t), "latchkey-system", "latchkey-users")
			ctx := context.Background()
			_, authErr := d.Authenticate(ctx, "alice", sampleAlicePassword)
			_, ok, lookupErr := d.Lookup(ctx, "alice")
			checkErr := d.Check(ctx)
			for what, err := range map[string]error{"Authenticate": authErr, "Lookup": lookupErr, "Check": checkErr} {
				if !errors.Is(err, tt.want) {
					t.Errorf("%s error = %v, want %v", what, err, tt.want)
				}
				if errors.Is(err, ErrInvalidCredentials) {
					t.Errorf("%s: a broken directory must not look like a wrong password: %v", what, err)
				}
			}
			if ok {
				t.Error("Lookup found a user in a broken directory")
			}
		})
	}
}

func TestDirectoryReadsStringDataOfUnappliedObjects(t *testing.T) {
	r := &stubReader{secret: corev1.Secret{StringData: map[string]string{latchkeyv1.UsersDataKey: usersYAML()}}}
	d := NewDirectory(r, "ns", "users")
	if _, err := d.Authenticate(context.Background(), "alice", sampleAlicePassword); err != nil {
		t.Fatal(err)
	}
	// Without a resourceVersion, a change of content is still picked up.
	r.mu.Lock()
	r.secret.StringData[latchkeyv1.UsersDataKey] = "[]"
	r.mu.Unlock()
	if _, ok, err := d.Lookup(context.Background(), "alice"); err != nil || ok {
		t.Fatalf("after the content changed: Lookup = %v, %v", ok, err)
	}
}

func TestAuthenticateGivesUpWhenTheContextEndsWhileWaiting(t *testing.T) {
	d, _ := newTestDirectory(t, usersSecret(usersYAML()))
	if err := d.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range cap(d.slots) { // every hashing slot is busy
		d.slots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Authenticate(ctx, "alice", sampleAlicePassword)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("Authenticate = %v, want context.Canceled", err)
	}
}

func TestHashPassword(t *testing.T) {
	h1, err := HashPassword("s3cret passphrase")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not argon2id PHC with the documented parameters", h1)
	}
	parsed, err := parseHash(h1)
	if err != nil {
		t.Fatalf("HashPassword output does not parse: %v", err)
	}
	if !parsed.verify("s3cret passphrase") || parsed.verify("s3cret passphrasE") {
		t.Fatal("HashPassword output does not verify its password alone")
	}
	h2, _ := HashPassword("s3cret passphrase")
	if h1 == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not fresh")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("an empty password was hashed")
	}
	if _, err := HashPassword(strings.Repeat("p", MaxPasswordBytes+1)); err == nil {
		t.Fatal("an over-long password was hashed")
	}
	// A hash HashPassword wrote is a valid users file entry.
	d, _ := newTestDirectory(t, usersSecret(fmt.Sprintf("- {username: erin, passwordHash: %q}\n", h1)))
	if _, err := d.Authenticate(context.Background(), "erin", "s3cret passphrase"); err != nil {
		t.Fatal(err)
	}
}

func TestReferenceHashesVerify(t *testing.T) {
	for _, tt := range []struct{ name, hash, password string }{
		{"the sample bcrypt $2a$", sampleAliceHash, sampleAlicePassword},
		{"the same bcrypt hash as $2y$ (htpasswd, PHP)", "$2y$" + sampleAliceHash[4:], sampleAlicePassword},
		{"the same bcrypt hash as $2b$", "$2b$" + sampleAliceHash[4:], sampleAlicePassword},
		{"the reference argon2id, one lane", refArgonHash, refArgonPassword},
		{"the reference argon2id, four lanes", refArgonHash4Lanes, refArgonPassword},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseHash(tt.hash)
			if err != nil {
				t.Fatal(err)
			}
			if !h.verify(tt.password) {
				t.Fatal("the right password does not verify")
			}
			if h.verify(tt.password + "x") {
				t.Fatal("a wrong password verifies")
			}
		})
	}
}
