// Package policy parses C2SP tlog-policy files (c2sp.org/tlog-policy) and
// verifies checkpoints against them: which log keys are trusted and which
// quorum of witnesses must have cosigned.
//
//	log <vkey> [<url>]
//	witness <name> <vkey> [<url>]
//	group <name> all|any|<k> <member>...
//	quorum <name>|none
//
// Witness keys are cosigner keys of either type (format/cosignature):
// Ed25519 cosignature/v1 (0x04) or ML-DSA-44 (0x06). A hybrid policy, where a
// witness counts only when both its Ed25519 and its ML-DSA-44 cosignatures
// verify, is plain tlog-policy: one witness line per key and a group that
// needs all of them:
//
//	witness w1-ed w1.example+1234abcd+BAKt… https://w1.example
//	witness w1-pq w1.example+5678cdef+BoAb… https://w1.example
//	group w1 all w1-ed w1-pq
//	...
//	group witnesses 2 w1 w2 w3
//	quorum witnesses
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/cosignature"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Errors a caller branches on.
var (
	// ErrMalformed: the policy file itself is wrong.
	ErrMalformed = errors.New("malformed policy")
	// ErrVerification is wrapped by every reason a checkpoint fails the policy.
	ErrVerification = errors.New("checkpoint fails the policy")
)

// Log is a trusted log key.
type Log struct {
	Origin   string
	VKey     string
	URL      string
	Verifier note.Verifier
}

// Witness is a trusted witness key.
type Witness struct {
	Name     string
	VKey     string
	URL      string
	Verifier note.Verifier
	// Type is the key's cosignature type: Ed25519 (0x04) or ML-DSA-44 (0x06).
	Type cosignature.KeyType
}

type group struct {
	k       int
	members []string
}

// Policy is a parsed tlog-policy.
type Policy struct {
	Logs      []Log
	Witnesses []Witness
	groups    map[string]group
	witnesses map[string]int // name → index in Witnesses
	// Quorum names the witness or group that must be satisfied ("none": no witnesses).
	Quorum string
}

// Parse parses a tlog-policy. Errors name the line.
func Parse(b []byte) (*Policy, error) {
	p := &Policy{groups: map[string]group{}, witnesses: map[string]int{}}
	defined := map[string]bool{"none": true}
	origins := map[string]bool{}
	for n, line := range strings.Split(string(b), "\n") {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrMalformed, n+1, fmt.Sprintf(format, a...))
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c != '\t' && (c < 0x20 || c == 0x7f) {
				return nil, bad("byte 0x%02x is not allowed", c)
			}
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "log":
			if len(f) < 2 || len(f) > 3 {
				return nil, bad("want: log <vkey> [<url>]")
			}
			v, err := note.NewVerifier(f[1])
			if err != nil {
				return nil, bad("log vkey: %v", err)
			}
			if origins[v.Name()] {
				return nil, bad("log %q is listed twice", v.Name())
			}
			origins[v.Name()] = true
			l := Log{Origin: v.Name(), VKey: f[1], Verifier: v}
			if len(f) == 3 {
				l.URL = f[2]
			}
			p.Logs = append(p.Logs, l)
		case "witness":
			if len(f) < 3 || len(f) > 4 {
				return nil, bad("want: witness <name> <vkey> [<url>]")
			}
			if defined[f[1]] {
				return nil, bad("name %q is already defined", f[1])
			}
			k, err := cosignature.ParseVKey(f[2])
			if err != nil {
				return nil, bad("witness %s vkey: %v", f[1], err)
			}
			v := k.Verifier
			w := Witness{Name: f[1], VKey: f[2], Verifier: v, Type: k.Type}
			if len(f) == 4 {
				w.URL = f[3]
			}
			for _, o := range p.Witnesses {
				if o.Verifier.Name() == v.Name() && o.Verifier.KeyHash() == v.KeyHash() {
					return nil, bad("witness %s has the same key as %s", f[1], o.Name)
				}
			}
			defined[f[1]] = true
			p.witnesses[f[1]] = len(p.Witnesses)
			p.Witnesses = append(p.Witnesses, w)
		case "group":
			if len(f) < 4 {
				return nil, bad("want: group <name> all|any|<k> <member>...")
			}
			if defined[f[1]] {
				return nil, bad("name %q is already defined", f[1])
			}
			members := f[3:]
			for i, m := range members {
				if !defined[m] || m == "none" {
					return nil, bad("member %q is not a witness or group defined above", m)
				}
				if slices.Contains(members[:i], m) {
					return nil, bad("member %q is listed twice", m)
				}
			}
			k := 0
			switch f[2] {
			case "all":
				k = len(members)
			case "any":
				k = 1
			default:
				v, err := strconv.Atoi(f[2])
				if err != nil || strconv.Itoa(v) != f[2] || v < 1 || v > len(members) {
					return nil, bad("threshold %q must be all, any or 1..%d", f[2], len(members))
				}
				k = v
			}
			defined[f[1]] = true
			p.groups[f[1]] = group{k: k, members: members}
		case "quorum":
			if len(f) != 2 {
				return nil, bad("want: quorum <name>|none")
			}
			if p.Quorum != "" {
				return nil, bad("a second quorum line")
			}
			if !defined[f[1]] {
				return nil, bad("quorum %q is not defined above", f[1])
			}
			p.Quorum = f[1]
		default:
			return nil, bad("unknown keyword %q (want log, witness, group or quorum)", f[0])
		}
	}
	if p.Quorum == "" {
		return nil, fmt.Errorf("%w: no quorum line (write \"quorum none\" to trust the log alone)", ErrMalformed)
	}
	return p, nil
}

// Verified is a checkpoint that satisfied the policy.
type Verified struct {
	Checkpoint checkpoint.Checkpoint
	Note       *note.Note
	Raw        []byte
	// Log is the log key that signed it.
	Log Log
	// Cosigned maps each witness whose cosignature verified to its timestamp.
	Cosigned map[string]time.Time
	// KeyTypes maps each witness in Cosigned to its key's type.
	KeyTypes map[string]cosignature.KeyType
}

// Verify checks a checkpoint note: a trusted log's signature (the origin
// equal to the key name), a strictly formed body, and the witness quorum.
// Unknown signatures are ignored; a known key's bad signature is rejected.
func (p *Policy) Verify(raw []byte) (*Verified, error) {
	if len(p.Logs) == 0 {
		return nil, fmt.Errorf("%w: the policy names no log key", ErrVerification)
	}
	vs := make([]note.Verifier, 0, len(p.Logs)+len(p.Witnesses))
	for _, l := range p.Logs {
		vs = append(vs, l.Verifier)
	}
	for _, w := range p.Witnesses {
		vs = append(vs, w.Verifier)
	}
	n, err := note.Open(raw, note.VerifierList(vs...))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: %s", ErrVerification, p.whoseSignature(invalid.Name, invalid.Hash))
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no signature by a key in the policy", ErrVerification)
		default:
			return nil, fmt.Errorf("%w: not a signed note: %v", ErrVerification, err)
		}
	}
	v := &Verified{Note: n, Raw: raw, Cosigned: map[string]time.Time{}, KeyTypes: map[string]cosignature.KeyType{}}
	found := false
	for _, s := range n.Sigs {
		for _, l := range p.Logs {
			if s.Name == l.Verifier.Name() && s.Hash == l.Verifier.KeyHash() {
				v.Log, found = l, true
			}
		}
		for _, w := range p.Witnesses {
			if s.Name == w.Verifier.Name() && s.Hash == w.Verifier.KeyHash() {
				ts, err := fnote.CoSigV1Timestamp(s)
				if err != nil {
					ts = time.Time{}
				}
				v.Cosigned[w.Name] = ts
				v.KeyTypes[w.Name] = w.Type
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("%w: no signature by the log key (only witness cosignatures)", ErrVerification)
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerification, err)
	}
	if c.Origin != v.Log.Origin {
		return nil, fmt.Errorf("%w: origin %q is not the log key's name %q", ErrVerification, c.Origin, v.Log.Origin)
	}
	v.Checkpoint = c
	if !p.satisfied(p.Quorum, v.Cosigned) {
		names := make([]string, 0, len(v.Cosigned))
		for w := range v.Cosigned {
			names = append(names, w)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w: quorum %q not met (cosigned by: %s)", ErrVerification, p.Quorum, orNone(names))
	}
	return v, nil
}

// whoseSignature describes the key of a signature that failed to verify:
// the witness and its key type, or the log.
func (p *Policy) whoseSignature(name string, hash uint32) string {
	for _, w := range p.Witnesses {
		if w.Verifier.Name() == name && w.Verifier.KeyHash() == hash {
			return fmt.Sprintf("the %s cosignature of witness %s (key %s+%08x) does not verify", w.Type, w.Name, name, hash)
		}
	}
	return fmt.Sprintf("the log signature by %s (key ID %08x) does not verify", name, hash)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func (p *Policy) satisfied(name string, cosigned map[string]time.Time) bool {
	if name == "none" {
		return true
	}
	if _, ok := p.witnesses[name]; ok {
		_, signed := cosigned[name]
		return signed
	}
	g := p.groups[name]
	n := 0
	for _, m := range g.members {
		if p.satisfied(m, cosigned) {
			n++
		}
	}
	return n >= g.k
}

// Log returns the policy's log with the given origin.
func (p *Policy) LogFor(origin string) (Log, bool) {
	for _, l := range p.Logs {
		if l.Origin == origin {
			return l, true
		}
	}
	return Log{}, false
}
