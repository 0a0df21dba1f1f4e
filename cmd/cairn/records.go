package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cairnlog/cairn/format/record"
	"github.com/spf13/cobra"
)

// leafHash is the RFC 6962 leaf hash SHA-256(0x00 ‖ leaf).
func leafHash(leaf []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, leaf...))
	return h[:]
}

// describeRecord prints a leaf decoded as a Cairn record envelope, or says
// it is not one (a leaf from another log).
func describeRecord(leaf []byte) string {
	r, err := record.Decode(leaf)
	if err != nil {
		return fmt.Sprintf("leaf          %d bytes, not a Cairn record envelope (%v)\nleaf (base64) %s\n", len(leaf), err, base64.StdEncoding.EncodeToString(leaf))
	}
	ts := "not supplied"
	if !r.Time().IsZero() {
		ts = r.Time().Format(time.RFC3339Nano)
	}
	payload := string(r.Payload)
	if !utf8.Valid(r.Payload) {
		payload = "(base64) " + base64.StdEncoding.EncodeToString(r.Payload)
	}
	return fmt.Sprintf("submitter     %s\ntime          %s\ncontent type  %s\nidempotency   %s\npayload       %s\n", r.Submitter, ts, r.ContentType, r.IdempotencyKey, payload)
}

// recordJSON is the JSON form of a leaf.
func recordJSON(leaf []byte) map[string]any {
	r, err := record.Decode(leaf)
	if err != nil {
		return map[string]any{"leaf": leaf, "cairn_record": false}
	}
	j := map[string]any{"cairn_record": true, "submitter": r.Submitter, "timestamp_unix_millis": r.Timestamp, "content_type": r.ContentType, "idempotency_key": r.IdempotencyKey, "payload": r.Payload}
	if utf8.Valid(r.Payload) {
		j["payload_text"] = string(r.Payload)
	}
	return j
}

// signalContext is the command's context, cancelled on SIGINT or SIGTERM.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}
