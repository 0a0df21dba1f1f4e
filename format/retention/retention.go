// Package retention parses Cairn's retention policy: how long a log keeps
// its records, how long a prunable record is still physically kept, and
// what happens to it then. The policy drives the minimum index of C2SP
// tlog-tiles ("Pruning"): without one a log never prunes.
//
// The text is one directive a line (docs/retention.md):
//
//	# HIPAA: six years
//	keep 2190d
//	grace 30d
//	then archive posix:/srv/cairn-archive
//
// keep and then are required, grace is optional (default 0). Durations are
// Go durations (90s, 1h30m) or whole days with a d suffix (2190d). Blank
// lines and lines starting with # are ignored. Every other word is refused.
package retention

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Actions a policy takes once a record's grace period ends.
const (
	// Purge deletes the pruned entry bundles.
	Purge = "purge"
	// Archive copies them to an archive store, verifies the copy, then deletes them.
	Archive = "archive"
)

// MaxBytes bounds a policy file.
const MaxBytes = 4096

// Policy is a parsed retention policy.
type Policy struct {
	// Keep is how long a record is kept, counted from when the log
	// integrated it (the first published checkpoint covering it).
	Keep time.Duration
	// Grace is how long a record below the minimum index is still kept
	// physically (served 410 Gone, but on storage).
	Grace time.Duration
	// Action is Purge or Archive.
	Action string
	// ArchiveTo is the archive store, "posix:DIR" or "s3://BUCKET/PREFIX",
	// when Action is Archive.
	ArchiveTo string
}

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed retention policy")

// Parse parses a policy. Errors name the line and what was wrong.
func Parse(text []byte) (Policy, error) {
	var p Policy
	if len(text) > MaxBytes {
		return p, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrMalformed, len(text), MaxBytes)
	}
	var haveKeep, haveGrace, haveThen bool
	for i, line := range strings.Split(string(text), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d %q: %s", ErrMalformed, n, line, fmt.Sprintf(format, a...))
		}
		switch f[0] {
		case "keep", "grace":
			if len(f) != 2 {
				return p, bad("want %q followed by one duration", f[0])
			}
			d, err := ParseDuration(f[1])
			if err != nil {
				return p, bad("%v", err)
			}
			if f[0] == "keep" {
				if haveKeep {
					return p, bad("keep given twice")
				}
				if d <= 0 {
					return p, bad("keep must be positive")
				}
				haveKeep, p.Keep = true, d
			} else {
				if haveGrace {
					return p, bad("grace given twice")
				}
				haveGrace, p.Grace = true, d
			}
		case "then":
			if haveThen {
				return p, bad("then given twice")
			}
			haveThen = true
			switch {
			case len(f) == 2 && f[1] == Purge:
				p.Action = Purge
			case len(f) == 3 && f[1] == Archive:
				if err := CheckArchive(f[2]); err != nil {
					return p, bad("%v", err)
				}
				p.Action, p.ArchiveTo = Archive, f[2]
			default:
				return p, bad("want \"then purge\", \"then archive posix:DIR\" or \"then archive s3://BUCKET/PREFIX\"")
			}
		default:
			return p, bad("unknown directive %q (want keep, grace or then)", f[0])
		}
	}
	if !haveKeep {
		return p, fmt.Errorf("%w: no keep line (how long records are kept, e.g. keep 2190d)", ErrMalformed)
	}
	if !haveThen {
		return p, fmt.Errorf("%w: no then line (then purge, or then archive posix:DIR|s3://BUCKET/PREFIX)", ErrMalformed)
	}
	return p, nil
}

// String formats p in the policy language; Parse(p.String()) returns p.
func (p Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keep %s\n", FormatDuration(p.Keep))
	if p.Grace != 0 {
		fmt.Fprintf(&b, "grace %s\n", FormatDuration(p.Grace))
	}
	if p.Action == Archive {
		fmt.Fprintf(&b, "then archive %s\n", p.ArchiveTo)
	} else {
		fmt.Fprintf(&b, "then %s\n", p.Action)
	}
	return b.String()
}

// day is the length of the d suffix: 24 hours (retention periods are
// counted in elapsed time, not in calendar days).
const day = 24 * time.Hour

// ParseDuration parses a Go duration or a whole number of days ("2190d").
// Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 64)
		if err != nil || days == "" || days[0] == '+' {
			return 0, fmt.Errorf("duration %q: want a whole number of days before d", s)
		}
		if n > uint64(math.MaxInt64/int64(day)) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(n) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want Go syntax (90s, 1h30m) or days (2190d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return d, nil
}

// FormatDuration writes d as days when it is a whole number of them.
func FormatDuration(d time.Duration) string {
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// CheckArchive checks the syntax of an archive store: posix:DIR or
// s3://BUCKET/PREFIX (the prefix may be empty).
func CheckArchive(s string) error {
	if dir, ok := strings.CutPrefix(s, "posix:"); ok {
		if dir == "" {
			return fmt.Errorf("archive %q: posix needs a directory", s)
		}
		return nil
	}
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return fmt.Errorf("archive %q: s3 needs a bucket (s3://BUCKET/PREFIX)", s)
		}
		if strings.Contains(prefix, "//") || strings.HasPrefix(prefix, "/") {
			return fmt.Errorf("archive %q: the prefix has an empty path segment", s)
		}
		return nil
	}
	return fmt.Errorf("archive %q: want posix:DIR or s3://BUCKET/PREFIX", s)
}
