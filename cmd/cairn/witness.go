package main

import "github.com/spf13/cobra"

// witnessCmds returns the witness commands (cairn witness ...).
func witnessCmds() []*cobra.Command { return nil }
