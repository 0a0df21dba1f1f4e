package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairnlog/cairn/format/cosignature"
	cairnlog "github.com/cairnlog/cairn/log"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
)

func newKeygenCmd() *cobra.Command {
	var name, out, alg string
	var witness, kek bool
	cmd := &cobra.Command{
		Use:   "keygen --name NAME --out PREFIX",
		Short: "Generate a signing key pair (PREFIX.key and PREFIX.vkey)",
		Long: `Generate an Ed25519 key pair in the C2SP signed-note formats.

PREFIX.key holds the private key (PRIVATE+KEY+NAME+ID+..., mode 0600) and
PREFIX.vkey the verifier key (NAME+ID+...). A log's key name must equal its
origin. With --witness the key is a cosignature/v1 (0x04) witness key: the
vkey is what log operators put in their witness policy. A missing directory
of PREFIX is created (mode 0700). An existing file is never overwritten.

--alg picks a witness key's algorithm: ed25519 (the default; cosignature/v1,
0x04) or ml-dsa-44 (post-quantum ML-DSA-44 subtree cosignatures, 0x06; the
private key is the 32-byte seed, the vkey carries the 1312-byte public key,
as omniwitness and transparency-dev/formats write them). A witness may hold
one key of each (cairn witness serve --key A --key B). Log keys are always
Ed25519: tlog-tiles requires an Ed25519 log signature.

With --kek it writes instead a new key-encryption key to the file --out
(mode 0600), for 'cairn log serve --kek-file': it wraps the data keys of
records naming data subjects (docs/erasure.md). Keep a copy apart from the
log's storage; without it no sealed record can be read again.`,
		Example: `  cairn keygen --name example.com/log --out data/log
  cairn keygen --witness --name witness.example.net --out data/witness
  cairn keygen --witness --alg ml-dsa-44 --name witness.example.net --out data/witness-pq
  cairn keygen --kek --out data/log.kek`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kek {
				return writeKEK(cmd, out, name, witness)
			}
			if name == "" || out == "" {
				return errors.New("--name and --out are required")
			}
			typ, err := cosignature.ParseKeyType(alg)
			if err != nil {
				return fmt.Errorf("--alg: %w", err)
			}
			if !witness && typ != cosignature.Ed25519 {
				return fmt.Errorf("--alg %s: only witness keys (--witness) may be %s; a log key is Ed25519, as tlog-tiles requires", alg, typ)
			}
			skey, vkey, err := generateKey(name, witness)
			if witness {
				skey, vkey, err = generateCosignerKey(name, typ)
			}
			if err != nil {
				return err
			}
			if err := writeKeyPair(out, skey, vkey); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), vkey)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "key name; for a log, its origin (e.g. example.com/log)")
	cmd.Flags().StringVar(&out, "out", "", "path prefix of the PREFIX.key and PREFIX.vkey files")
	cmd.Flags().BoolVar(&witness, "witness", false, "make a witness cosigner key (0x04, or 0x06 with --alg ml-dsa-44)")
	cmd.Flags().StringVar(&alg, "alg", "ed25519", "witness key algorithm: ed25519 or ml-dsa-44")
	cmd.Flags().BoolVar(&kek, "kek", false, "write a key-encryption key to the file --out instead (for log serve --kek-file)")
	return cmd
}

// generateKey returns a new private key and verifier key named name: an
// Ed25519 log key, or with witness an Ed25519 cosigner key (type 0x04 in
// both, so it cannot be mistaken for a log key by x/mod's note.NewSigner).
func generateKey(name string, witness bool) (skey, vkey string, err error) {
	if strings.ContainsAny(name, "+ \t\n") {
		return "", "", fmt.Errorf("key name %q must not contain spaces or '+'", name)
	}
	if witness {
		return generateCosignerKey(name, cosignature.Ed25519)
	}
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("generating key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// generateCosignerKey returns a new witness (cosigner) key of type typ.
func generateCosignerKey(name string, typ cosignature.KeyType) (skey, vkey string, err error) {
	if strings.ContainsAny(name, "+ \t\n") {
		return "", "", fmt.Errorf("key name %q must not contain spaces or '+'", name)
	}
	skey, vkey, err = cosignature.GenerateKey(name, typ)
	if err != nil {
		return "", "", fmt.Errorf("generating %s key %q: %w", typ, name, err)
	}
	return skey, vkey, nil
}

// writeKeyPair writes PREFIX.key (0600) and PREFIX.vkey, refusing to
// overwrite either. A missing directory of PREFIX is created (0700: it
// holds a private key).
func writeKeyPair(prefix, skey, vkey string) error {
	if err := os.MkdirAll(filepath.Dir(prefix), 0o700); err != nil {
		return fmt.Errorf("creating the directory of %s: %w", prefix, err)
	}
	for _, p := range []string{prefix + ".key", prefix + ".vkey"} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite a key", p)
		}
	}
	if err := writeNew(prefix+".key", skey+"\n", 0o600); err != nil {
		return err
	}
	return writeNew(prefix+".vkey", vkey+"\n", 0o644)
}

func writeNew(path, content string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return f.Close()
}

// writeKEK writes a new key-encryption key to out (0600), never over an
// existing file.
func writeKEK(cmd *cobra.Command, out, name string, witness bool) error {
	if out == "" {
		return errors.New("--out is required: the file to write the key-encryption key to")
	}
	if name != "" || witness {
		return errors.New("--kek takes only --out (a key-encryption key has no name)")
	}
	k, err := cairnlog.GenerateKEK()
	if err != nil {
		return fmt.Errorf("generating a key-encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return fmt.Errorf("creating the directory of %s: %w", out, err)
	}
	if err := writeNew(out, k, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote key-encryption key %s\n", out)
	return nil
}
