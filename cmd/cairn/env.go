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

// noEnvAnnotation marks a flag that no environment variable sets (see noEnv).
const noEnvAnnotation = "cairn_no_env"

// noEnv exempts flag name of fs from bindEnv and documentEnv: for flags that
// are a query's argument, not configuration (cairn history --key), whose
// CAIRN_* name would otherwise pick up a server's variable (log serve --key
// reads $CAIRN_KEY, a private key file).
func noEnv(fs *pflag.FlagSet, name string) {
	if err := fs.SetAnnotation(name, noEnvAnnotation, []string{"true"}); err != nil {
		panic(err) // the flag is defined right before: cannot happen
	}
}

func envExempt(f *pflag.Flag) bool {
	_, ok := f.Annotations[noEnvAnnotation]
	return ok || f.Name == "help"
}

// bindEnv makes every flag of cmd that was not given on the command line take
// its value from the mirroring CAIRN_* environment variable, if set. Call it
// first thing in RunE (or PreRunE). The flag's help text names the variable.
func bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || envExempt(f) {
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
		if !envExempt(f) && !strings.Contains(f.Usage, "$CAIRN_") {
			f.Usage += " ($" + envName(f.Name) + ")"
		}
	})
}
