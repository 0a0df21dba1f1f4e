package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName returns the environment variable that mirrors a flag:
// --checkpoint-interval ↔ CAIRN_CHECKPOINT_INTERVAL.
func envName(flag string) string {
	return "CAIRN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// bindEnv makes every flag of cmd that was not given on the command line take
// its value from the mirroring CAIRN_* environment variable, if set. Call it
// first thing in RunE (or PreRunE). The flag's help text names the variable.
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("environment variable %s=%q: %w", envName(f.Name), v, e)
			return
		}
		f.Changed = true
	})
	return err
}

// documentEnv appends the mirroring environment variable to every flag's usage.
func documentEnv(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "$CAIRN_") {
			f.Usage += " ($" + envName(f.Name) + ")"
		}
	})
}
