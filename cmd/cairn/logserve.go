package main

import "github.com/spf13/cobra"

func newLogCmd() *cobra.Command { return &cobra.Command{Use: "log", Short: "Run and operate the log"} }
func newDevCmd() *cobra.Command { return &cobra.Command{Use: "dev", Short: "Run a local demo"} }
