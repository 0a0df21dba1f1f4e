package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cairnlog/cairn/log/access"
	"github.com/spf13/cobra"
)

func newAccessCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Manage the log's access file: tokens and certificate principals",
		Long: `Manage the access file given to 'cairn log serve --access FILE'.

Tokens are printed once, when created, and stored only as salted SHA-256 hashes;
the file is written mode 0600 (the log refuses one others may write).
Roles: append (write records), read (read record contents when the log runs
with --read-access authenticated), admin (the operating endpoints: /metrics).
The log reloads the file on SIGHUP: a revocation takes effect without a restart.
If the reloaded file is broken the log keeps the previous one, and /readyz
answers 503 until a reload succeeds (docs/log.md).`,
		Example: `  # Against 'make run', whose log reads data/access.txt:
  cairn access list --file data/access.txt`,
	}
	cmd.AddCommand(newAccessAddCmd(), newAccessRevokeCmd(), newAccessListCmd())
	return cmd
}

func newAccessAddCmd() *cobra.Command {
	var file, roles string
	var cert bool
	cmd := &cobra.Command{
		Use:   "add --file F --role ROLE[,ROLE] NAME",
		Short: "Add a principal; prints its bearer token once",
		Example: `  # Against 'make run', whose log reads data/access.txt:
  cairn access add --file data/access.txt --role append billing-service
  cairn access add --file data/access.txt --role admin ops   # may scrape /metrics
  cairn access add --file data/access.txt --role append,read --cert spiffe://example.org/billing
  kill -HUP $(pgrep -f 'cairn log serve')   # make the running log pick it up`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return errors.New("--file is required")
			}
			rs, err := access.ParseRoles(roles)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			f, err := access.LoadOrEmpty(file)
			if err != nil {
				return err
			}
			if cert {
				if err := f.AddCert(args[0], rs); err != nil {
					return err
				}
				return f.Save(file)
			}
			token, err := f.AddToken(args[0], rs)
			if err != nil {
				return err
			}
			if err := f.Save(file); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "access file (created if missing, mode 0600)")
	cmd.Flags().StringVar(&roles, "role", "append", "comma-separated roles: append, read, admin")
	cmd.Flags().BoolVar(&cert, "cert", false, "NAME is a TLS client-certificate principal (URI SAN, else subject CN); no token")
	return cmd
}

func newAccessRevokeCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "revoke --file F NAME",
		Short: "Remove a principal's token and certificate grant",
		Example: `  # Against 'make run', after the 'access add' example:
  cairn access revoke --file data/access.txt billing-service && kill -HUP $(pgrep -f 'cairn log serve')`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return errors.New("--file is required")
			}
			f, err := access.Load(file)
			if err != nil {
				return err
			}
			if err := f.Revoke(args[0]); err != nil {
				return err
			}
			return f.Save(file)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "access file")
	return cmd
}

func newAccessListCmd() *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:   "list --file F",
		Short: "List principals and their roles (never tokens)",
		Example: `  # Against 'make run', whose log reads data/access.txt:
  cairn access list --file data/access.txt --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("--file is required")
			}
			f, err := access.Load(file)
			if err != nil {
				return err
			}
			type row struct {
				Kind  string        `json:"kind"`
				Name  string        `json:"name"`
				Roles []access.Role `json:"roles"`
				ID    string        `json:"token_id,omitempty"`
			}
			var rows []row
			for _, e := range f.Entries {
				rows = append(rows, row{e.Kind, e.Name, e.Roles, e.ID})
			}
			switch output {
			case "json":
				return json.NewEncoder(cmd.OutOrStdout()).Encode(rows)
			case "text":
				for _, r := range rows {
					fmt.Fprintf(cmd.OutOrStdout(), "%-6s %-40s %v %s\n", r.Kind, r.Name, r.Roles, r.ID)
				}
				return nil
			default:
				return fmt.Errorf("--output %q: want text or json", output)
			}
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "access file")
	cmd.Flags().StringVar(&output, "output", "text", "text or json")
	return cmd
}
