package main

import "github.com/spf13/cobra"

// auditorCmds returns the client-side commands (submit, checkpoint, verify, get, audit, monitor).
func auditorCmds() []*cobra.Command { return nil }
