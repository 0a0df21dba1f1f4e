// Command cairn is the one Cairn binary: the log, the witness, and the
// auditor's and submitter's tools. Commands parse flags, build a config and
// call into log/, witness/ or client/; no business logic lives here.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/internal/notrace"
	"github.com/spf13/cobra"
)

// Exit codes, documented in docs/cli.md.
const (
	exitOK           = 0
	exitVerifyFailed = 1 // the log, a witness or a receipt failed verification
	exitError        = 2 // usage, I/O or anything else that prevented checking
	exitPruned       = 3 // the record asked for is below the log's minimum index (retention)
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "cairn",
		Short: "Cairn: a tamper-evident, witnessed audit log",
		Long: `Cairn is a Merkle transparency log for audit records.

Services append records; the log sequences them into a Merkle tree and publishes
signed checkpoints; witnesses cosign each checkpoint only if it is consistent with
everything they saw before; auditors verify with nothing but public keys.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newKeygenCmd(), newLogCmd(), newAccessCmd(), newDevCmd(), newEraseCmd())
	root.AddCommand(newMigrateCmd())
	root.AddCommand(witnessCmds()...)
	root.AddCommand(mirrorCmds()...)
	root.AddCommand(auditorCmds()...)
	root.AddCommand(indexCmds()...)
	root.AddCommand(newSearchCmd(), newHistoryCmd())
	return root
}

// exitCode is the one rule for exit codes: 1 when what was checked is
// wrong (an error wrapping client.ErrVerification, which includes every
// checkpoint that fails its policy), 2 for anything that prevented checking.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, client.ErrVerification):
		return exitVerifyFailed
	case errors.Is(err, client.ErrPruned):
		return exitPruned
	}
	return exitError
}

func main() {
	// Tessera traces every append; Cairn exports no traces.
	notrace.Install()
	cmd, err := newRootCmd().ExecuteC()
	if err == nil {
		os.Exit(exitOK)
	}
	// Library errors name Config fields; say which flag sets the field.
	err = flagError(cmd, err)
	// Messages quote what a server or a record said: escape what is not
	// printable, line by line.
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(os.Stderr, "cairn:", safeText(line))
	}
	os.Exit(exitCode(err))
}
