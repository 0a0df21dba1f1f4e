package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/spf13/cobra"
)

func TestFlagErrorNamesTheFlagThatSetsTheField(t *testing.T) {
	root := &cobra.Command{Use: "root"}
	root.PersistentFlags().String("data", "", "")
	annotateField(root.PersistentFlags(), "data", "Config.Dir")
	cmd := &cobra.Command{Use: "sub"}
	cmd.Flags().String("token-file", "", "")
	annotateField(cmd.Flags(), "token-file", "SubmitterOptions.Token")
	annotateField(cmd.Flags(), "token-file", "HTTPOptions.Token")
	root.AddCommand(cmd)

	cause := errors.New("contains byte 0x20")
	for _, c := range []struct {
		err  error
		want string
	}{
		{fielderr.New("SubmitterOptions.Token", cause), "--token-file: contains byte 0x20"},
		{fielderr.New("HTTPOptions.Token", cause), "--token-file: contains byte 0x20"},
		{fmt.Errorf("opening the log: %w", fielderr.New("HTTPOptions.Token", cause)), "opening the log: --token-file: contains byte 0x20"},
		{fielderr.Errorf("Config.Dir", "not a directory"), "--data: not a directory"}, // an inherited flag
		{fielderr.Errorf("Config.Other", "bad"), "Config.Other: bad"},                 // no flag sets it: as is
		{errors.New("plain"), "plain"}, // no field at all
	} {
		got := flagError(cmd, c.err)
		if got.Error() != c.want {
			t.Errorf("flagError(%q) = %q, want %q", c.err, got, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("flagError(%q) does not unwrap to the original error", c.err)
		}
	}
}

// TestClientOptionErrorsNameTheFlag runs the binary: an option the library
// refuses is reported by the flag that set it, and exits 2.
func TestClientOptionErrorsNameTheFlag(t *testing.T) {
	_, stderr, code := run(t, []string{"CAIRN_TOKEN=two words"}, "submit", "--grpc", "127.0.0.1:1", "--insecure-plaintext", "-")
	if code != 2 || !strings.Contains(stderr, "cairn: --token-file: contains byte 0x20") {
		t.Fatalf("a token with a space: exit %d, %s", code, stderr)
	}
	_, stderr, code = run(t, nil, "checkpoint", "--log", "ftp://127.0.0.1:1", "--policy", testdata+"/interop.policy")
	if code != 2 || !strings.Contains(stderr, `cairn: --log: "ftp://127.0.0.1:1": want an http:// or https:// URL`) {
		t.Fatalf("an ftp:// log: exit %d, %s", code, stderr)
	}
}
