// Package loglist parses the witness network's log-list format
// (transparency-dev/witness-network log-list-format.md), which names the logs
// a witness cosigns for and a mirror stores.
package loglist

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Header is the first line of a witness-network log list.
const Header = "logs/v0"

// ErrLogList is wrapped by every log-list parsing error.
var ErrLogList = errors.New("malformed log list")

// Log is one log a witness cosigns for (or a mirror stores).
type Log struct {
	// Origin is the checkpoint origin line (default: the vkey's name).
	Origin string
	// VKey is the log's Ed25519 (0x01) verifier key.
	VKey string
	// Verifier checks the log's checkpoint signatures.
	Verifier note.Verifier
	// QPD is the allowed add-checkpoint requests per day (0 = unlimited).
	QPD uint64
	// Contact is free text naming the log operator.
	Contact string
}

// Parse parses the witness network's log-list format:
//
//	logs/v0
//	vkey <vkey>          Ed25519 (0x01) only; starts a log
//	origin <origin>      optional, default the vkey name
//	qpd <1..2^31-1>      optional
//	contact <text>       optional
//
// Lines are trimmed; blank lines and # comments are ignored; within a log the
// keys come in this order. Errors name the line.
func Parse(b []byte) ([]Log, error) {
	var logs []Log
	origins := map[string]int{}
	order := map[string]int{"vkey": 0, "origin": 1, "qpd": 2, "contact": 3}
	last := -1
	sawHeader := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrLogList, n, fmt.Sprintf(format, a...))
		}
		if !sawHeader {
			if line != Header {
				return nil, bad("first line must be %q, got %q", Header, truncate(line))
			}
			sawHeader = true
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		pos, known := order[key]
		if !known {
			return nil, bad("unknown key %q (want vkey, origin, qpd or contact)", truncate(key))
		}
		if key != "vkey" {
			if len(logs) == 0 {
				return nil, bad("%q before the first vkey", key)
			}
			if pos <= last {
				return nil, bad("%q out of order (vkey, origin, qpd, contact)", key)
			}
		}
		last = pos
		switch key {
		case "vkey":
			v, err := note.NewVerifier(val)
			if err != nil {
				return nil, bad("vkey %q: %v", truncate(val), err)
			}
			if err := requireEd25519(val); err != nil {
				return nil, bad("%v", err)
			}
			logs = append(logs, Log{Origin: v.Name(), VKey: val, Verifier: v})
		case "origin":
			if val == "" {
				return nil, bad("empty origin")
			}
			logs[len(logs)-1].Origin = val
		case "qpd":
			q, err := strconv.ParseUint(val, 10, 31)
			if err != nil || q == 0 || strconv.FormatUint(q, 10) != val {
				return nil, bad("qpd %q must be a decimal 1..2^31-1", truncate(val))
			}
			logs[len(logs)-1].QPD = q
		case "contact":
			logs[len(logs)-1].Contact = val
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLogList, err)
	}
	if !sawHeader {
		return nil, fmt.Errorf("%w: missing %q header", ErrLogList, Header)
	}
	for i, l := range logs {
		if j, dup := origins[l.Origin]; dup {
			return nil, fmt.Errorf("%w: origin %q is listed twice (logs %d and %d)", ErrLogList, l.Origin, j+1, i+1)
		}
		origins[l.Origin] = i
	}
	return logs, nil
}

// requireEd25519 checks that a vkey is of signature type 0x01.
func requireEd25519(vkey string) error {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return fmt.Errorf("vkey is not name+id+key")
	}
	k, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(k) == 0 || k[0] != 0x01 {
		return fmt.Errorf("log vkeys must be Ed25519 (type 0x01)")
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
