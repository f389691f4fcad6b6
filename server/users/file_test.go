package users

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestParseFile(t *testing.T) {
	one := func(fields string) string { return "- username: alice\n" + fields }
	hashField := fmt.Sprintf("  passwordHash: %q\n", sampleAliceHash)
	tests := []struct {
		name string
		file string
		want string // "" = valid; else a substring of the error
	}{
		{"a full entry parses", usersYAML(), ""},
		{"an entry with only username and hash parses", one(hashField), ""},
		{"an empty list is a file with no users", "[]", ""},
		{"a flow-style entry parses", fmt.Sprintf("- {username: alice, passwordHash: %q, roles: [a]}", sampleAliceHash), ""},
		{"an unquoted bcrypt hash parses", "- username: alice\n  passwordHash: " + sampleAliceHash + "\n", ""},
		{"a numeric username is read as text", fmt.Sprintf("- {username: 1234, passwordHash: %q}", sampleAliceHash), ""},
		{"a non-ASCII username parses", fmt.Sprintf("- {username: zoë, passwordHash: %q}", sampleAliceHash), ""},

		{"an empty document is refused", "", "empty"},
		{"a comment-only document is refused", "# nobody\n", "empty"},
		{"null is refused", "null", "must be a YAML list"},
		{"a mapping root is refused", "users: []", "must be a YAML list"},
		{"a scalar root is refused", "alice", "must be a YAML list"},
		{"two documents are refused", "[]\n---\n[]\n", "more than one YAML document"},
		{"malformed YAML is refused", "- username: [oops", "invalid users file"},
		{"a list of strings is refused", "- alice\n- bob\n", "cannot unmarshal"},
		{"an unknown field is refused", one(hashField + "  password: hunter2\n"), "field password not found"},
		{"a field in another case is refused", "- Username: alice\n" + hashField, "field Username not found"},
		{"a repeated field is refused", one(hashField + "  username: mallory\n"), "already defined"},
		{"an anchor is refused", one(hashField + "  roles: &r [a]\n"), "anchors and aliases"},
		{"an alias is refused", fmt.Sprintf("- {username: a, passwordHash: &h %q}\n- {username: b, passwordHash: *h}\n", sampleAliceHash), "anchors and aliases"},
		{"a merge key is refused", one(hashField + "  <<: {email: a@example.com}\n"), "merge keys"},
		{"a file over 1 MiB is refused", "[]" + strings.Repeat(" ", MaxFileBytes), "larger than"},
		{"a file that is not UTF-8 is refused", "- {username: \xff, passwordHash: x}", "not UTF-8"},

		{"a missing username is refused", fmt.Sprintf("- {passwordHash: %q}", sampleAliceHash), "username is required"},
		{"an empty username is refused", fmt.Sprintf("- {username: '', passwordHash: %q}", sampleAliceHash), "username is required"},
		{"a null username is refused", fmt.Sprintf("- {username: ~, passwordHash: %q}", sampleAliceHash), "username is required"},
		{"a username with a space is refused", fmt.Sprintf("- {username: 'al ice', passwordHash: %q}", sampleAliceHash), "whitespace"},
		{"a username with a trailing space is refused", fmt.Sprintf("- {username: 'alice ', passwordHash: %q}", sampleAliceHash), "whitespace"},
		{"a username with a zero-width space is refused", fmt.Sprintf("- {username: \"ali\u200bce\", passwordHash: %q}", sampleAliceHash), "whitespace"},
		{"a username with a right-to-left override is refused", fmt.Sprintf("- {username: \"ali\u202ece\", passwordHash: %q}", sampleAliceHash), "whitespace"},
		{"a username over the limit is refused", fmt.Sprintf("- {username: %s, passwordHash: %q}", strings.Repeat("a", MaxUsernameBytes+1), sampleAliceHash), "longer than"},
		{"a duplicate username is refused", fmt.Sprintf("- {username: alice, passwordHash: %q}\n- {username: alice, passwordHash: %q}", sampleAliceHash, sampleAliceHash), "more than once"},
		{"a duplicate username in another case is refused", fmt.Sprintf("- {username: alice, passwordHash: %q}\n- {username: Alice, passwordHash: %q}", sampleAliceHash, sampleAliceHash), "more than once"},

		{"a missing hash is refused", "- username: alice\n", "passwordHash is required"},
		{"a plaintext password is refused", "- {username: alice, passwordHash: hunter2}", "not a bcrypt"},
		{"an MD5-crypt hash is refused", "- {username: alice, passwordHash: '$1$abc$def'}", "not a bcrypt"},
		{"a SHA-512-crypt hash is refused", "- {username: alice, passwordHash: '$6$rounds=5000$salt$hash'}", "not a bcrypt"},
		{"a $2x$ bcrypt hash is refused", "- {username: alice, passwordHash: '$2x$" + sampleAliceHash[4:] + "'}", "not a bcrypt"},
		{"a $2$ bcrypt hash is refused", "- {username: alice, passwordHash: '$2$" + sampleAliceHash[4:] + "'}", "not a bcrypt"},
		{"a truncated bcrypt hash is refused", "- {username: alice, passwordHash: '" + sampleAliceHash[:59] + "'}", "60 characters"},
		{"bcrypt cost 4 is refused", "- {username: alice, passwordHash: '$2a$04$" + sampleAliceHash[7:] + "'}", "outside 10..14"},
		{"bcrypt cost 31 is refused", "- {username: alice, passwordHash: '$2a$31$" + sampleAliceHash[7:] + "'}", "outside 10..14"},
		{"bcrypt cost 15 is refused", "- {username: alice, passwordHash: '$2a$15$" + sampleAliceHash[7:] + "'}", "outside 10..14"},
		{"a bcrypt cost that is not a number is refused", "- {username: alice, passwordHash: '$2a$1a$" + sampleAliceHash[7:] + "'}", "two digits"},
		{"a bcrypt hash with a bad character is refused", "- {username: alice, passwordHash: '" + sampleAliceHash[:40] + "!" + sampleAliceHash[41:] + "'}", "bcrypt base64"},
		{"argon2i is refused", "- {username: alice, passwordHash: '$argon2i$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", "only argon2id"},
		{"argon2d is refused", "- {username: alice, passwordHash: '$argon2d$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", "only argon2id"},
		{"argon2id version 16 is refused", argonEntry("v=16", "m=19456,t=2,p=1"), "v=19"},
		{"argon2id without a version is refused", "- {username: alice, passwordHash: '$argon2id$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", "PHC form"},
		{"argon2id with 4 GiB of memory is refused", argonEntry("v=19", "m=4194304,t=2,p=1"), "outside"},
		{"argon2id with one more KiB than allowed is refused", argonEntry("v=19", "m=131073,t=1,p=1"), "outside"},
		{"argon2id with 1000 passes is refused", argonEntry("v=19", "m=19456,t=1000,p=1"), "t=1000 is outside"},
		{"argon2id with zero passes is refused", argonEntry("v=19", "m=19456,t=0,p=1"), "t=0 is outside"},
		{"argon2id with 255 lanes is refused", argonEntry("v=19", "m=19456,t=2,p=255"), "p=255 is outside"},
		{"argon2id with too little memory is refused", argonEntry("v=19", "m=4096,t=10,p=1"), "outside"},
		{"argon2id below OWASP's memory-time floor is refused", argonEntry("v=19", "m=8192,t=2,p=1"), "below OWASP"},
		{"argon2id with parameters out of order is refused", argonEntry("v=19", "t=2,m=19456,p=1"), "exactly m=M,t=T,p=P"},
		{"argon2id with a keyid parameter is refused", argonEntry("v=19", "m=19456,t=2,p=1,keyid=x"), "exactly m=M,t=T,p=P"},
		{"argon2id with a leading zero is refused", argonEntry("v=19", "m=019456,t=2,p=1"), "exactly m=M,t=T,p=P"},
		{"argon2id with a negative parameter is refused", argonEntry("v=19", "m=19456,t=-2,p=1"), "not a number"},
		{"argon2id with a huge parameter is refused", argonEntry("v=19", "m=99999999999,t=2,p=1"), "exactly m=M,t=T,p=P"},
		{"argon2id with a short salt is refused", "- {username: alice, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", "salt must be"},
		{"argon2id with a padded salt is refused", "- {username: alice, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ==$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", "salt must be"},
		{"argon2id with a short digest is refused", "- {username: alice, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY'}", "hash must be"},
		{"argon2id with URL-safe base64 is refused", "- {username: alice, passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj_aJQ'}", "hash must be"},
		{"argon2id with an extra field is refused", "- {username: alice, passwordHash: '" + refArgonHash + "$x'}", "PHC form"},

		{"an email with a display name is refused", one(hashField + "  email: '<alice@example.com>'\n"), "bare address"},
		{"an email without @ is refused", one(hashField + "  email: alice\n"), "bare address"},
		{"an email with a space is refused", one(hashField + "  email: 'alice @example.com'\n"), "whitespace"},
		{"a name with a newline is refused", one(hashField + "  name: \"Alice\\nAdmin\"\n"), "control characters"},
		{"a name over the limit is refused", one(hashField + "  name: " + strings.Repeat("n", MaxNameBytes+1) + "\n"), "at most"},
		{"an empty role is refused", one(hashField + "  roles: ['']\n"), "role 1"},
		{"a role with a space is refused", one(hashField + "  roles: [a, 'b c']\n"), "role 2"},
		{"a duplicate role is refused", one(hashField + "  roles: [a, a]\n"), "more than once"},
		{"roles as a string are refused", one(hashField + "  roles: admin\n"), "cannot unmarshal"},
		{"too many roles are refused", one(hashField + "  roles: [" + strings.TrimSuffix(strings.Repeat("r,", MaxRolesPerUser+1), ",") + "]\n"), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFile([]byte(tt.file))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ParseFile: %v", err)
				}
				if f == nil {
					t.Fatal("ParseFile returned no file and no error")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseFile accepted the file, want an error mentioning %q", tt.want)
			}
			if !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseFile error = %v, want ErrInvalidFile mentioning %q", err, tt.want)
			}
		})
	}
}

// argonEntry is an entry with the reference argon2id salt and digest and the given version and
// parameter fields.
func argonEntry(version, params string) string {
	return fmt.Sprintf("- {username: alice, passwordHash: '$argon2id$%s$%s$bGF0Y2hrZXlzYWx0MTZieQ$89sKf3kVXoY2jUBdZdSSRuPfmhAAbJPg6xlXQaj/aJQ'}", version, params)
}

func TestParseFileErrorsNeverRepeatTheHash(t *testing.T) {
	for _, h := range []string{
		"$2a$04$" + sampleAliceHash[7:],
		strings.Replace(refArgonHash, "t=2", "t=99", 1),
		"plaintext-password-by-mistake",
	} {
		_, err := ParseFile(fmt.Appendf(nil, "- {username: alice, passwordHash: %q}", h))
		if err == nil {
			t.Fatalf("%q was accepted", h)
		}
		for _, part := range strings.Split(h, "$") {
			if len(part) >= 16 && strings.Contains(err.Error(), part) {
				t.Fatalf("error %q repeats part of the hash", err)
			}
		}
	}
}

// TestSampleUsersFileParses keeps config/samples/users.yaml (the --dev demo user) loadable.
func TestSampleUsersFileParses(t *testing.T) {
	raw, err := os.ReadFile("../../config/samples/users.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var secret struct {
		StringData map[string]string `yaml:"stringData"`
	}
	if err := yaml.Unmarshal(raw, &secret); err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile([]byte(secret.StringData["users.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := f.find("alice")
	if !ok || !r.hash.verify(sampleAlicePassword) {
		t.Fatal("the sample's alice does not log in with the documented password")
	}
}

// FuzzParse feeds the parser arbitrary files. It must never panic, and what it accepts must be
// a consistent directory: valid, unique usernames with parsed, bounded hashes, which survive
// being written back as YAML and parsed again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(usersYAML()))
	f.Add([]byte("[]"))
	f.Add([]byte(argonEntry("v=19", "m=19456,t=2,p=1")))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile(data)
		if err != nil {
			if file != nil {
				t.Fatal("a file returned with an error")
			}
			if !errors.Is(err, ErrInvalidFile) {
				t.Fatalf("error %v does not wrap ErrInvalidFile", err)
			}
			return
		}
		var rewritten []entry
		seen := map[string]bool{}
		for _, r := range file.records {
			if checkUsername(r.user.Username) != nil || seen[foldUsername(r.user.Username)] {
				t.Fatalf("accepted bad or duplicate username %q", r.user.Username)
			}
			seen[foldUsername(r.user.Username)] = true
			got, ok := file.find(r.user.Username)
			if !ok || got.user.Username != r.user.Username {
				t.Fatalf("find(%q) does not return its record", r.user.Username)
			}
			h := r.hash
			switch h.kind {
			case kindBcrypt:
				if h.cost < MinBcryptCost || h.cost > MaxBcryptCost {
					t.Fatalf("accepted bcrypt cost %d", h.cost)
				}
			case kindArgon2id:
				if h.memory > MaxArgon2Memory || h.time > MaxArgon2Time || h.threads > MaxArgon2Threads || h.time == 0 || h.threads == 0 {
					t.Fatalf("accepted argon2id %s", h.params())
				}
			default:
				t.Fatalf("accepted a hash of kind %d", h.kind)
			}
			rewritten = append(rewritten, entry{
				Username: r.user.Username, PasswordHash: encodeHash(h), Email: r.user.Email, Name: r.user.Name, Roles: r.user.Roles,
			})
		}
		out, err := yaml.Marshal(rewritten)
		if err != nil {
			t.Fatal(err)
		}
		if len(rewritten) == 0 {
			out = []byte("[]")
		}
		again, err := ParseFile(out)
		if err != nil {
			t.Fatalf("the accepted file, written back, does not parse: %v\n%s", err, out)
		}
		if fmt.Sprint(again.Users()) != fmt.Sprint(file.Users()) {
			t.Fatalf("round trip changed the users:\n%v\n%v", file.Users(), again.Users())
		}
	})
}

// encodeHash writes a parsed hash back in its text form.
func encodeHash(h *passwordHash) string {
	if h.kind == kindBcrypt {
		return h.encoded
	}
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", h.memory, h.time, h.threads,
		base64.RawStdEncoding.EncodeToString(h.salt), base64.RawStdEncoding.EncodeToString(h.key))
}
