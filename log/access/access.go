// Package access is the log's access file: who may append, read and
// administer, by bearer token or by TLS client-certificate principal.
//
// Tokens are never stored: only a per-token random salt and
// SHA-256(salt ‖ secret). A token is "cairn_<id>_<secret>", where the id
// (public, 8 hex bytes) finds the entry and the secret (32 random bytes,
// base64url) proves possession. The file is line based:
//
//	# cairn access file v1
//	token <name> <roles> <id> <base64 salt> <base64 hash>
//	cert  <principal> <roles>
//
// roles is a comma-separated subset of append, read, admin.
package access

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/cairnlog/cairn/internal/atomicfile"
	"strings"
)

// Role is a permission a principal holds.
type Role string

// The roles.
const (
	RoleAppend Role = "append" // append records
	RoleRead   Role = "read"   // read record contents (entry bundles, entries, receipts)
	RoleAdmin  Role = "admin"  // operate the log
)

// Roles lists the valid roles.
var Roles = []Role{RoleAppend, RoleRead, RoleAdmin}

// Header is the first line of every access file.
const Header = "# cairn access file v1"

// tokenPrefix starts every token.
const tokenPrefix = "cairn_"

// Errors a caller branches on.
var (
	ErrUnknownToken = errors.New("unknown or revoked token")
	ErrMalformed    = errors.New("malformed access file")
	ErrExists       = errors.New("principal already exists")
	ErrNotFound     = errors.New("no such principal")
)

// Entry is one line of the access file.
type Entry struct {
	// Kind is "token" or "cert".
	Kind string
	// Name is the principal: recorded as the submitter of its records.
	Name  string
	Roles []Role
	// Token entries only.
	ID   string
	Salt []byte
	Hash []byte
}

// Has reports whether e holds role r.
func (e Entry) Has(r Role) bool { return slices.Contains(e.Roles, r) }

// File is a parsed access file.
type File struct {
	Entries []Entry
}

// ParseRoles parses "append,read".
func ParseRoles(s string) ([]Role, error) {
	var out []Role
	for _, r := range strings.Split(s, ",") {
		role := Role(strings.TrimSpace(r))
		if !slices.Contains(Roles, role) {
			return nil, fmt.Errorf("unknown role %q (want append, read or admin)", r)
		}
		if !slices.Contains(out, role) {
			out = append(out, role)
		}
	}
	return out, nil
}

func rolesString(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// validName: non-empty, printable ASCII without spaces (a principal may be a
// URI SAN such as spiffe://example.org/billing).
func validName(n string) error {
	if n == "" || len(n) > 255 {
		return fmt.Errorf("principal name must be 1..255 bytes")
	}
	for i := 0; i < len(n); i++ {
		if n[i] <= 0x20 || n[i] >= 0x7f {
			return fmt.Errorf("principal name %q must be printable ASCII without spaces", n)
		}
	}
	return nil
}

// Parse parses an access file.
func Parse(b []byte) (*File, error) {
	f := &File{}
	names := map[string]bool{}
	ids := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrMalformed, n, fmt.Sprintf(format, a...))
		}
		var e Entry
		switch fields[0] {
		case "token":
			if len(fields) != 6 {
				return nil, bad("want: token NAME ROLES ID SALT HASH")
			}
			e.Kind, e.Name, e.ID = "token", fields[1], fields[3]
			var err error
			if e.Salt, err = base64.StdEncoding.DecodeString(fields[4]); err != nil || len(e.Salt) != 16 {
				return nil, bad("salt is not 16 bytes of base64")
			}
			if e.Hash, err = base64.StdEncoding.DecodeString(fields[5]); err != nil || len(e.Hash) != sha256.Size {
				return nil, bad("hash is not a base64 SHA-256")
			}
			if id, err := hex.DecodeString(e.ID); err != nil || len(id) != 8 {
				return nil, bad("token id %q is not 16 hex digits", e.ID)
			}
			if ids[e.ID] {
				return nil, bad("duplicate token id %s", e.ID)
			}
			ids[e.ID] = true
		case "cert":
			if len(fields) != 3 {
				return nil, bad("want: cert PRINCIPAL ROLES")
			}
			e.Kind, e.Name = "cert", fields[1]
		default:
			return nil, bad("unknown kind %q (want token or cert)", fields[0])
		}
		if err := validName(e.Name); err != nil {
			return nil, bad("%v", err)
		}
		roles, err := ParseRoles(fields[2])
		if err != nil {
			return nil, bad("%v", err)
		}
		e.Roles = roles
		key := e.Kind + " " + e.Name
		if names[key] {
			return nil, bad("duplicate %s principal %q", e.Kind, e.Name)
		}
		names[key] = true
		f.Entries = append(f.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return f, nil
}

// Load reads and parses the access file at path.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading access file: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// LoadOrEmpty is Load, but a missing file is an empty one.
func LoadOrEmpty(path string) (*File, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	return Load(path)
}

// Marshal encodes f.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	for _, e := range f.Entries {
		switch e.Kind {
		case "token":
			fmt.Fprintf(&b, "token %s %s %s %s %s\n", e.Name, rolesString(e.Roles), e.ID,
				base64.StdEncoding.EncodeToString(e.Salt), base64.StdEncoding.EncodeToString(e.Hash))
		case "cert":
			fmt.Fprintf(&b, "cert %s %s\n", e.Name, rolesString(e.Roles))
		}
	}
	return b.Bytes()
}

// Save writes f to path atomically (see internal/atomicfile), mode 0600.
func (f *File) Save(path string) error {
	return atomicfile.Write(path, f.Marshal(), 0o600)
}

func (f *File) find(kind, name string) int {
	return slices.IndexFunc(f.Entries, func(e Entry) bool { return e.Kind == kind && e.Name == name })
}

// AddToken adds a token principal and returns its token, which is shown once
// and stored only as a salted hash.
func (f *File) AddToken(name string, roles []Role) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if len(roles) == 0 {
		return "", errors.New("at least one role is required")
	}
	if f.find("token", name) >= 0 {
		return "", fmt.Errorf("%w: token %q (revoke it first)", ErrExists, name)
	}
	id := make([]byte, 8)
	secret := make([]byte, 32)
	salt := make([]byte, 16)
	for _, b := range [][]byte{id, secret, salt} {
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
	}
	e := Entry{Kind: "token", Name: name, Roles: roles, ID: hex.EncodeToString(id), Salt: salt, Hash: hashSecret(salt, secret)}
	f.Entries = append(f.Entries, e)
	return tokenPrefix + e.ID + "_" + base64.RawURLEncoding.EncodeToString(secret), nil
}

// AddCert grants roles to a TLS client-certificate principal.
func (f *File) AddCert(principal string, roles []Role) error {
	if err := validName(principal); err != nil {
		return err
	}
	if len(roles) == 0 {
		return errors.New("at least one role is required")
	}
	if f.find("cert", principal) >= 0 {
		return fmt.Errorf("%w: cert %q", ErrExists, principal)
	}
	f.Entries = append(f.Entries, Entry{Kind: "cert", Name: principal, Roles: roles})
	return nil
}

// Revoke removes every entry (token and cert) for name.
func (f *File) Revoke(name string) error {
	n := len(f.Entries)
	f.Entries = slices.DeleteFunc(f.Entries, func(e Entry) bool { return e.Name == name })
	if len(f.Entries) == n {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return nil
}

func hashSecret(salt, secret []byte) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write(secret)
	return h.Sum(nil)
}

// TokenID returns the public id of a well-formed token ("cairn_<id>_<secret>"),
// which names it in logs without revealing the secret.
func TokenID(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "_")
	if b, err := hex.DecodeString(id); !ok || err != nil || len(b) != 8 {
		return "", false
	}
	return id, true
}

// Token returns the entry a bearer token authenticates.
func (f *File) Token(token string) (Entry, error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return Entry{}, ErrUnknownToken
	}
	id, secret64, ok := strings.Cut(rest, "_")
	if !ok {
		return Entry{}, ErrUnknownToken
	}
	secret, err := base64.RawURLEncoding.DecodeString(secret64)
	if err != nil {
		return Entry{}, ErrUnknownToken
	}
	for _, e := range f.Entries {
		if e.Kind == "token" && e.ID == id {
			if subtle.ConstantTimeCompare(hashSecret(e.Salt, secret), e.Hash) == 1 {
				return e, nil
			}
			return Entry{}, ErrUnknownToken
		}
	}
	return Entry{}, ErrUnknownToken
}

// Cert returns the entry for a certificate principal.
func (f *File) Cert(principal string) (Entry, bool) {
	i := f.find("cert", principal)
	if i < 0 {
		return Entry{}, false
	}
	return f.Entries[i], true
}
