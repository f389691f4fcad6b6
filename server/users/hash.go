package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Bounds on the cost of a password hash. The users file is written by cluster administrators, but
// a typo or a hostile edit must not make one login take minutes or gigabytes, and a weak hash
// must not slip in unnoticed, so both ends are checked when the file is parsed.
const (
	// MinBcryptCost and MaxBcryptCost bound the bcrypt cost (log2 rounds). 10 is OWASP's floor;
	// 14 takes about a second on a server core.
	MinBcryptCost = 10
	MaxBcryptCost = 14

	// MaxArgon2Memory bounds argon2id's m, in KiB (128 MiB): a concurrent login costs that much
	// memory each.
	MaxArgon2Memory = 128 * 1024
	// MinArgon2Memory is the smallest m OWASP lists for argon2id (7 MiB, with t=5).
	MinArgon2Memory = 7 * 1024
	// MinArgon2MemoryTime is the smallest m·t accepted: every configuration of OWASP's
	// Password Storage Cheat Sheet for argon2id (m=47104,t=1 … m=7168,t=5) reaches it.
	MinArgon2MemoryTime = 7 * 1024 * 5
	// MaxArgon2Time and MaxArgon2Threads bound t and p.
	MaxArgon2Time    = 10
	MaxArgon2Threads = 8
	// Salt and key lengths of an argon2id hash, in bytes (RFC 9106 §3.1 recommends 16 and 32).
	MinArgon2SaltLen = 8
	MaxArgon2SaltLen = 64
	MinArgon2KeyLen  = 16
	MaxArgon2KeyLen  = 64
)

// The parameters HashPassword uses: OWASP's first argon2id configuration (19 MiB, 2 passes, 1
// lane), cheaper in memory than RFC 9106 §4's 64 MiB but still memory-hard, because a login
// server pays for every concurrent attempt.
const (
	hashMemory  = 19 * 1024
	hashTime    = 2
	hashThreads = 1
	hashSaltLen = 16
	hashKeyLen  = 32
)

// MaxPasswordBytes is the longest password accepted. It keeps an attacker from making the server
// hash megabytes, and is far beyond any real password or passphrase.
const MaxPasswordBytes = 1024

// bcryptMaxPassword is where bcrypt silently truncates its input. A longer password is refused
// rather than compared by its prefix.
const bcryptMaxPassword = 72

// ErrInvalidHash marks a passwordHash that is not a bcrypt or argon2id hash within the bounds.
var ErrInvalidHash = errors.New("invalid password hash")

type hashKind int

const (
	kindBcrypt hashKind = iota + 1
	kindArgon2id
)

// passwordHash is a parsed, bounded hash. Parsing it once, when the file is read, means a login
// never meets a malformed hash, and the unknown-user dummy can copy its cost.
type passwordHash struct {
	kind hashKind
	// bcrypt: the encoded hash, which the library parses itself, and its cost.
	encoded string
	cost    int
	// argon2id: the PHC fields.
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// params identifies the cost of a hash, so that hashes of equal cost can be counted.
func (h *passwordHash) params() string {
	if h.kind == kindBcrypt {
		return "bcrypt/" + strconv.Itoa(h.cost)
	}
	return fmt.Sprintf("argon2id/m=%d,t=%d,p=%d/%d/%d", h.memory, h.time, h.threads, len(h.salt), len(h.key))
}

// bcryptEncoding is bcrypt's base64 alphabet.
var bcryptEncoding = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// parseHash accepts bcrypt ("$2a$", "$2b$", "$2y$", 60 characters) and argon2id in PHC form
// ("$argon2id$v=19$m=M,t=T,p=P$SALT$HASH", unpadded standard base64), within the bounds above.
// The error never repeats the hash.
func parseHash(s string) (*passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return parseBcrypt(s)
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, fmt.Errorf("%w: only argon2id is accepted of the argon2 family (RFC 9106 §4)", ErrInvalidHash)
	case s == "":
		return nil, fmt.Errorf("%w: passwordHash is required", ErrInvalidHash)
	default:
		return nil, fmt.Errorf("%w: not a bcrypt ($2a$, $2b$, $2y$) or argon2id PHC ($argon2id$) hash", ErrInvalidHash)
	}
}

func parseBcrypt(s string) (*passwordHash, error) {
	// $2y$CC$ + 22 characters of salt + 31 of hash.
	if len(s) != 60 || s[6] != '$' {
		return nil, fmt.Errorf("%w: a bcrypt hash is 60 characters: $2b$CC$ then 53 of salt and hash", ErrInvalidHash)
	}
	cost, err := strconv.Atoi(s[4:6])
	if err != nil || s[4] < '0' || s[4] > '9' || s[5] < '0' || s[5] > '9' {
		return nil, fmt.Errorf("%w: bcrypt cost is not two digits", ErrInvalidHash)
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return nil, fmt.Errorf("%w: bcrypt cost %d is outside %d..%d", ErrInvalidHash, cost, MinBcryptCost, MaxBcryptCost)
	}
	if _, err := bcryptEncoding.DecodeString(s[7:29]); err != nil {
		return nil, fmt.Errorf("%w: bcrypt salt is not bcrypt base64", ErrInvalidHash)
	}
	if _, err := bcryptEncoding.DecodeString(s[29:]); err != nil {
		return nil, fmt.Errorf("%w: bcrypt hash is not bcrypt base64", ErrInvalidHash)
	}
	return &passwordHash{kind: kindBcrypt, encoded: s, cost: cost}, nil
}

func parseArgon2id(s string) (*passwordHash, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(s, "$")
	if len(parts) != 6 {
		return nil, fmt.Errorf("%w: argon2id PHC form is $argon2id$v=19$m=M,t=T,p=P$SALT$HASH", ErrInvalidHash)
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("%w: argon2id version must be v=19 (0x13, RFC 9106 §3.1)", ErrInvalidHash)
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return nil, fmt.Errorf("%w: argon2id parameters must be exactly m=M,t=T,p=P", ErrInvalidHash)
	}
	var m, t, p uint64
	for i, dst := range []*uint64{&m, &t, &p} {
		name := "mtp"[i : i+1]
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok || v == "" || len(v) > 10 || (len(v) > 1 && v[0] == '0') {
			return nil, fmt.Errorf("%w: argon2id parameters must be exactly m=M,t=T,p=P", ErrInvalidHash)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: argon2id parameter %s is not a number", ErrInvalidHash, name)
		}
		*dst = n
	}
	switch {
	case m < MinArgon2Memory || m > MaxArgon2Memory:
		return nil, fmt.Errorf("%w: argon2id m=%d KiB is outside %d..%d", ErrInvalidHash, m, MinArgon2Memory, MaxArgon2Memory)
	case t < 1 || t > MaxArgon2Time:
		return nil, fmt.Errorf("%w: argon2id t=%d is outside 1..%d", ErrInvalidHash, t, MaxArgon2Time)
	case p < 1 || p > MaxArgon2Threads:
		return nil, fmt.Errorf("%w: argon2id p=%d is outside 1..%d", ErrInvalidHash, p, MaxArgon2Threads)
	case m*t < MinArgon2MemoryTime:
		return nil, fmt.Errorf("%w: argon2id m·t=%d is below OWASP's minimum %d", ErrInvalidHash, m*t, MinArgon2MemoryTime)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < MinArgon2SaltLen || len(salt) > MaxArgon2SaltLen {
		return nil, fmt.Errorf("%w: argon2id salt must be %d..%d bytes of unpadded base64", ErrInvalidHash, MinArgon2SaltLen, MaxArgon2SaltLen)
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) < MinArgon2KeyLen || len(key) > MaxArgon2KeyLen {
		return nil, fmt.Errorf("%w: argon2id hash must be %d..%d bytes of unpadded base64", ErrInvalidHash, MinArgon2KeyLen, MaxArgon2KeyLen)
	}
	return &passwordHash{
		kind: kindArgon2id, memory: uint32(m), time: uint32(t), threads: uint8(p), salt: salt, key: key,
	}, nil
}

// verify reports whether password hashes to h. Both libraries compare in constant time: bcrypt
// inside CompareHashAndPassword, argon2id here with subtle.ConstantTimeCompare.
func (h *passwordHash) verify(password string) bool {
	switch h.kind {
	case kindBcrypt:
		ok := bcrypt.CompareHashAndPassword([]byte(h.encoded), []byte(password)) == nil
		// bcrypt ignores bytes past 72, so a longer password would match by its prefix. The
		// comparison above still ran, so refusing here costs the same as a wrong password.
		return ok && len(password) <= bcryptMaxPassword
	case kindArgon2id:
		got := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
		return subtle.ConstantTimeCompare(got, h.key) == 1
	}
	return false
}

// dummyLike returns a hash of the same kind and cost as h that no password matches (its salt and
// digest are random), for verifying when the user is unknown: the work, and so the time, is the
// same as for a known user with a wrong password (OAuth 2.1 §7.7 brute force, SECURITY-CASES 48).
// Making it needs no hashing, so it can be built when the file is read.
func dummyLike(h *passwordHash) (*passwordHash, error) {
	switch h.kind {
	case kindBcrypt:
		raw := make([]byte, 16+23)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("dummy hash: %w", err)
		}
		salt := bcryptEncoding.EncodeToString(raw[:16]) // 22 characters
		sum := bcryptEncoding.EncodeToString(raw[16:])  // 31 characters
		return &passwordHash{kind: kindBcrypt, encoded: fmt.Sprintf("$2b$%02d$%s%s", h.cost, salt, sum), cost: h.cost}, nil
	case kindArgon2id:
		salt := make([]byte, len(h.salt))
		key := make([]byte, len(h.key))
		if _, err := rand.Read(salt); err != nil {
			return nil, fmt.Errorf("dummy hash: %w", err)
		}
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("dummy hash: %w", err)
		}
		return &passwordHash{kind: kindArgon2id, memory: h.memory, time: h.time, threads: h.threads, salt: salt, key: key}, nil
	}
	return nil, fmt.Errorf("dummy hash: unknown kind %d", h.kind)
}

// defaultHash has HashPassword's parameters; it shapes the dummy when the file has no users.
var defaultHash = passwordHash{
	kind: kindArgon2id, memory: hashMemory, time: hashTime, threads: hashThreads,
	salt: make([]byte, hashSaltLen), key: make([]byte, hashKeyLen),
}

// HashPassword returns an argon2id hash of password in PHC form, with a fresh 16-byte salt and
// OWASP's parameters (m=19456 KiB, t=2, p=1), ready for the passwordHash field of the users file.
// It refuses an empty password and one longer than MaxPasswordBytes.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("hash password: the password is empty")
	}
	if len(password) > MaxPasswordBytes {
		return "", fmt.Errorf("hash password: longer than %d bytes", MaxPasswordBytes)
	}
	salt := make([]byte, hashSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, hashTime, hashMemory, hashThreads, hashKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, hashMemory, hashTime, hashThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}
