package users

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Bounds on the users file. A Secret holds at most 1 MiB; the same bound applies to --dev
// manifests, which never reach an API server.
const (
	MaxFileBytes     = 1 << 20
	MaxUsernameBytes = 256
	MaxNameBytes     = 256
	MaxEmailBytes    = 254 // RFC 5321 §4.5.3.1.3, the longest usable forward path
	MaxRoleBytes     = 128
	MaxRolesPerUser  = 64
)

// ErrInvalidFile marks a users file that cannot be used: bad YAML, an unknown field, a duplicate
// or empty username, a bad hash. The whole file is refused, never part of it, so a typo cannot
// silently lock out some users and keep others.
var ErrInvalidFile = errors.New("invalid users file")

// entry is one element of the users file, as written.
type entry struct {
	Username     string   `yaml:"username"`
	PasswordHash string   `yaml:"passwordHash"`
	Email        string   `yaml:"email"`
	Name         string   `yaml:"name"`
	Roles        []string `yaml:"roles"`
}

// record is a validated user and its parsed hash.
type record struct {
	user User
	hash *passwordHash
}

// File is a parsed, validated users file.
type File struct {
	records []record
	// byKey finds the index of a record by foldUsername(username).
	byKey map[string]int
}

// Len returns the number of users.
func (f *File) Len() int { return len(f.records) }

// Users returns copies of every user, in file order.
func (f *File) Users() []User {
	out := make([]User, len(f.records))
	for i := range f.records {
		out[i] = f.records[i].user.clone()
	}
	return out
}

// find returns the record of username, matched case-insensitively (see ParseFile).
func (f *File) find(username string) (*record, bool) {
	i, ok := f.byKey[foldUsername(username)]
	if !ok {
		return nil, false
	}
	return &f.records[i], true
}

// foldUsername is the key usernames are unique under and looked up by.
func foldUsername(s string) string { return strings.ToLower(s) }

// ParseFile parses and validates a users file, the YAML list stored under key users.yaml of the
// users Secret:
//
//	# users.yaml
//	- username: alice                # required; unique, compared case-insensitively
//	  passwordHash: "$2b$12$..."     # required; bcrypt, or argon2id in PHC form
//	  email: alice@example.com       # optional; a bare address
//	  name: Alice Liddell            # optional; display name
//	  roles: [admin, user]           # optional; the access token's roles claim
//
// Parsing is strict: an unknown or repeated field, a second YAML document, an anchor, alias or
// merge key, a duplicate username, or a hash outside the cost bounds (see MinBcryptCost and
// friends) rejects the whole file with an error wrapping ErrInvalidFile. An empty list ("[]") is
// a valid file with no users; an empty document is not, because it is more likely a mistake.
// Errors name the entry and field, never a password hash.
func ParseFile(data []byte) (*File, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidFile, MaxFileBytes)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrInvalidFile)
	}
	if err := checkShape(data); err != nil {
		return nil, err
	}
	var entries []entry
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // an unknown field is an error, and field names are case-sensitive
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFile, err)
	}

	f := &File{records: make([]record, 0, len(entries)), byKey: make(map[string]int, len(entries))}
	for i, e := range entries {
		r, err := validateEntry(e)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrInvalidFile, i+1, err)
		}
		key := foldUsername(r.user.Username)
		if _, dup := f.byKey[key]; dup {
			return nil, fmt.Errorf("%w: entry %d: username %q appears more than once (compared case-insensitively)",
				ErrInvalidFile, i+1, r.user.Username)
		}
		f.byKey[key] = len(f.records)
		f.records = append(f.records, r)
	}
	return f, nil
}

// checkShape walks the YAML node tree before decoding: exactly one document whose root is a
// sequence, and no anchors, aliases or merge keys. Aliases are how a small YAML file expands into
// a huge one, and a users file has no use for them.
func checkShape(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the file is empty (write [] for no users)", ErrInvalidFile)
		}
		return fmt.Errorf("%w: %w", ErrInvalidFile, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one YAML document", ErrInvalidFile)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.SequenceNode {
		return fmt.Errorf("%w: the file must be a YAML list of users", ErrInvalidFile)
	}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			return fmt.Errorf("%w: line %d: YAML anchors and aliases are not allowed", ErrInvalidFile, n.Line)
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Tag == "!!merge" || n.Content[i].Value == "<<" {
					return fmt.Errorf("%w: line %d: YAML merge keys are not allowed", ErrInvalidFile, n.Content[i].Line)
				}
			}
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(doc.Content[0])
}

func validateEntry(e entry) (record, error) {
	if err := checkUsername(e.Username); err != nil {
		return record{}, err
	}
	h, err := parseHash(e.PasswordHash)
	if err != nil {
		return record{}, fmt.Errorf("user %q: passwordHash: %w", e.Username, err)
	}
	if e.Email != "" {
		if err := checkEmail(e.Email); err != nil {
			return record{}, fmt.Errorf("user %q: %w", e.Username, err)
		}
	}
	if len(e.Name) > MaxNameBytes || hasControl(e.Name) || strings.TrimSpace(e.Name) != e.Name {
		return record{}, fmt.Errorf("user %q: name must be at most %d bytes, without control characters or surrounding spaces",
			e.Username, MaxNameBytes)
	}
	if len(e.Roles) > MaxRolesPerUser {
		return record{}, fmt.Errorf("user %q: more than %d roles", e.Username, MaxRolesPerUser)
	}
	for i, role := range e.Roles {
		if role == "" || len(role) > MaxRoleBytes || hasSpaceOrControl(role) {
			return record{}, fmt.Errorf("user %q: role %d must be 1..%d bytes without spaces or control characters",
				e.Username, i+1, MaxRoleBytes)
		}
		if slices.Contains(e.Roles[:i], role) {
			return record{}, fmt.Errorf("user %q: role %q appears more than once", e.Username, role)
		}
	}
	return record{
		user: User{Username: e.Username, Email: e.Email, Name: e.Name, Roles: slices.Clone(e.Roles)},
		hash: h,
	}, nil
}

// checkUsername: 1..MaxUsernameBytes of printable characters without whitespace. The username is
// the sub claim, so it must be unambiguous in logs and tokens.
func checkUsername(u string) error {
	if u == "" {
		return errors.New("username is required")
	}
	if len(u) > MaxUsernameBytes {
		return fmt.Errorf("username is longer than %d bytes", MaxUsernameBytes)
	}
	if hasSpaceOrControl(u) {
		return fmt.Errorf("username %q contains whitespace or a control character", u)
	}
	return nil
}

// checkEmail accepts a bare address (no display name, no angle brackets), as RFC 5322 parses it.
func checkEmail(email string) error {
	if len(email) > MaxEmailBytes || hasSpaceOrControl(email) {
		return fmt.Errorf("email must be at most %d bytes without whitespace", MaxEmailBytes)
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return errors.New("email is not a bare address such as alice@example.com")
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

func hasSpaceOrControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError ||
			unicode.Is(unicode.Cf, r) // zero-width and bidi formatting characters
	})
}
