package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/record"
	"github.com/spf13/cobra"
)

// eraseJSON is what cairn erase prints.
type eraseJSON struct {
	SubjectHash   string    `json:"subject_hash"`
	Index         uint64    `json:"index"`
	AlreadyErased bool      `json:"already_erased"`
	ErasedAt      time.Time `json:"erased_at"`
	Endpoint      string    `json:"endpoint"`
}

func newEraseCmd() *cobra.Command {
	var c clientFlags
	var subject, reason string
	cmd := &cobra.Command{
		Use:   "erase --grpc ADDR --subject ID --reason TEXT",
		Short: "Erase a data subject: destroy its key, log the erasure",
		Long: `Erase every record of a data subject (GDPR art. 17) without rewriting the log:
the log destroys the subject's data key in its key store and appends an erasure
record (who, when, the subject's keyed hash, the reason). The subject's records
keep their index, leaf hash and proofs, and read as "erased on DATE" from then on.

Needs the admin role. Erasure is final and idempotent: erasing an erased
subject answers the first erasure again. A subject under a legal hold is
refused. The reason is logged in clear: write no personal data in it.
See docs/erasure.md for what erasure does and does not reach.`,
		Example: `  cairn erase --grpc 127.0.0.1:9090 --ca data/tls/ca.pem --token-file data/admin.token \
      --subject customer-4711 --reason "GDPR art. 17 request 2026-118"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if subject == "" {
				return errors.New("--subject is required")
			}
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required (it is recorded in the log)")
			}
			s, err := c.submitter(nil)
			if err != nil {
				return err
			}
			defer s.Close()
			e, err := s.Erase(cmd.Context(), subject, reason)
			if err != nil {
				return c.explain(err)
			}
			out := eraseJSON{SubjectHash: hex.EncodeToString(e.SubjectHash), Index: e.Index, AlreadyErased: e.AlreadyErased, ErasedAt: e.ErasedAt, Endpoint: e.Endpoint}
			text := fmt.Sprintf("erased subject %s on %s; erasure record at index %d\n", out.SubjectHash, e.ErasedAt.Format(time.RFC3339), e.Index)
			if e.AlreadyErased {
				text = fmt.Sprintf("subject %s was already erased on %s; erasure record at index %d\n", out.SubjectHash, e.ErasedAt.Format(time.RFC3339), e.Index)
			}
			return c.emit(cmd.OutOrStdout(), out, text)
		},
	}
	c.register(cmd.Flags(), false, true, false)
	cmd.Flags().StringVar(&subject, "subject", "", "the data subject's identifier, as given to submit --subject")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the log in clear: no personal data)")
	documentEnv(cmd)
	return cmd
}

// sealedJSON is what cairn get prints for a sealed record.
type sealedJSON struct {
	Index         uint64   `json:"index"`
	State         string   `json:"state"`
	SubjectHashes []string `json:"subject_hashes"`
	ErasedAt      string   `json:"erased_at,omitempty"`
	Detail        string   `json:"detail,omitempty"`
	recordJSON
}

// emitSealed prints sealed leaf index, decrypted by the log, after checking
// the log's answer against the proved leaf.
func (c *clientFlags) emitSealed(cmd *cobra.Command, l *client.Log, index uint64, leaf []byte) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	d, err := l.Record(ctx, index)
	if err != nil {
		return fmt.Errorf("entry %d is a sealed record (it names data subjects); reading it needs a token with the read role: %w", index, err)
	}
	if err := client.CheckDecoded(leaf, d); err != nil {
		return err
	}
	out := sealedJSON{Index: index, State: d.State, SubjectHashes: d.SubjectHashes, Detail: d.Detail}
	text := fmt.Sprintf("index         %d\nsubjects      %s\n", index, strings.Join(d.SubjectHashes, ", "))
	switch d.State {
	case record.StateDecrypted:
		out.recordJSON = recordOf(d.Record)
		out.LeafHash = leafHash(leaf)
		text += describeRecord(d.Record)
	case record.StateErased:
		out.ErasedAt = time.UnixMilli(d.ErasedAtUnixMillis).UTC().Format(time.RFC3339)
		out.recordJSON = recordJSON{LeafHash: leafHash(leaf)}
		text += fmt.Sprintf("state         erased on %s (the subject's key was destroyed; index, leaf hash and proofs are intact)\nleaf hash     %s\n", out.ErasedAt, leafHash(leaf))
	default:
		return fmt.Errorf("entry %d cannot be read: %s: %s", index, d.State, d.Detail)
	}
	return c.emit(cmd.OutOrStdout(), out, text)
}
