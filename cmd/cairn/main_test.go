package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// cairnBin is the real binary under test: $CAIRN_BIN (make test builds it)
// or one built for this test run.
var cairnBin string

func TestMain(m *testing.M) {
	cairnBin = os.Getenv("CAIRN_BIN")
	if cairnBin == "" {
		dir, err := os.MkdirTemp("", "cairn-bin")
		if err != nil {
			panic(err)
		}
		cairnBin = filepath.Join(dir, "cairn")
		// Built as make build builds it: without cgo.
		build := exec.Command("go", "build", "-o", cairnBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building cairn: %v\n%s", err, out)
			os.Exit(2)
		}
		defer os.RemoveAll(dir)
	}
	os.Exit(m.Run())
}

// run executes the binary and returns stdout, stderr and the exit code.
func run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func keyID(name string, typ byte, pub []byte) string {
	h := sha256.Sum256(append(append([]byte(name+"\n"), typ), pub...))
	return fmt.Sprintf("%08x", binary.BigEndian.Uint32(h[:4]))
}

func TestKeygenWritesSignedNoteKeys(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "log")
	out, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", prefix)
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	vkey := strings.TrimSpace(string(must(os.ReadFile(prefix + ".vkey"))))
	skey := strings.TrimSpace(string(must(os.ReadFile(prefix + ".key"))))
	if strings.TrimSpace(out) != vkey {
		t.Errorf("keygen printed %q, vkey file holds %q", out, vkey)
	}
	if st, _ := os.Stat(prefix + ".key"); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	// The pair signs and verifies with x/mod.
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := note.Sign(&note.Note{Text: "hello\n"}, s)
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	// The key ID is SHA-256(name || \n || 0x01 || pk)[:4].
	parts := strings.SplitN(vkey, "+", 3)
	pk, _ := base64.StdEncoding.DecodeString(parts[2])
	if pk[0] != 0x01 || parts[1] != keyID(parts[0], 0x01, pk[1:]) {
		t.Errorf("vkey %s: wrong type or key ID", vkey)
	}

	// Never overwrite.
	_, stderr, code = run(t, nil, "keygen", "--name", "example.com/log", "--out", prefix)
	if code != 2 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("second keygen: exit %d, %q; want exit 2 refusing to overwrite", code, stderr)
	}
	if got := strings.TrimSpace(string(must(os.ReadFile(prefix + ".vkey")))); got != vkey {
		t.Error("the vkey changed")
	}
}

func TestKeygenWitnessKeyIsACosignatureKey(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "w")
	if _, stderr, code := run(t, nil, "keygen", "--witness", "--name", "witness.example/a", "--out", prefix); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	vkey := strings.TrimSpace(string(must(os.ReadFile(prefix + ".vkey"))))
	skey := strings.TrimSpace(string(must(os.ReadFile(prefix + ".key"))))
	parts := strings.SplitN(vkey, "+", 3)
	pk, _ := base64.StdEncoding.DecodeString(parts[2])
	if pk[0] != 0x04 || parts[1] != keyID(parts[0], 0x04, pk[1:]) {
		t.Fatalf("witness vkey %s is not a 0x04 cosignature key with the right ID", vkey)
	}
	if _, err := note.NewSigner(skey); err == nil {
		t.Error("a witness key must not load as a log (0x01) signer")
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := note.Sign(&note.Note{Text: "example.com/log\n1\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"}, s)
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("cosignature does not verify: %v", err)
	}
}

func TestLogServeRefusesOriginThatIsNotTheKeyName(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	_, stderr, code := run(t, []string{"CAIRN_ORIGIN=example.com/other"}, "log", "serve", "--key", dir+"/log.key",
		"--storage", "posix:"+dir+"/st", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--insecure-plaintext")
	if code != 2 || !strings.Contains(stderr, `--origin: "example.com/other" does not match the key name "example.com/log"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(dir + "/st/checkpoint"); err == nil {
		t.Error("a log was created despite the start-up error")
	}
}

func TestLogServeRejectsBadFlagValues(t *testing.T) {
	dir := t.TempDir()
	run(t, nil, "keygen", "--name", "example.com/log", "--out", dir+"/log")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--storage", "tape:/dev/st0"}, `unknown driver "tape"`},
		{[]string{"--max-record-bytes", "70000"}, "--max-record-bytes: 70000"},
		{[]string{"--checkpoint-interval", "10ms"}, "--checkpoint-interval"},
		{[]string{"--checkpoint-interval", "5s", "--checkpoint-republish-interval", "1s"}, "--checkpoint-republish-interval: 1s is shorter than --checkpoint-interval 5s"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--read-access", "secret"}, "--read-access"},
		{[]string{"--read-access", "authenticated"}, "needs --access"},
		{[]string{"--access", dir + "/missing"}, "--access"},
		{[]string{"--insecure-plaintext=false"}, "--tls-cert and --tls-key are required"},
		{[]string{"--mysql-dsn", "u:p@tcp(db)/x"}, "--mysql-dsn: applies only to --storage mysql+s3"},
		{[]string{"--storage", "mysql+s3"}, "--mysql-dsn: required with --storage mysql+s3 (missing: --mysql-dsn, --s3-bucket, --s3-region, --s3-access-key-file, --s3-secret-key-file)"},
		{[]string{"--storage", "mysql+s3:x"}, "mysql+s3 takes no argument"},
		{[]string{"--storage", "mysql+s3", "--checkpoint-interval", "500ms"}, "at most once a second"},
		{[]string{"--storage", "mysql+s3", "--mysql-dsn", "no slash", "--s3-bucket", "b", "--s3-region", "r",
			"--s3-access-key-file", dir + "/id", "--s3-secret-key-file", dir + "/secret"}, "--mysql-dsn: invalid DSN"},
		{[]string{"--storage", "mysql+s3", "--mysql-dsn", "u:p@tcp(127.0.0.1:1)/x", "--s3-bucket", "b", "--s3-region", "r",
			"--s3-access-key-file", dir + "/id", "--s3-secret-key-file", dir + "/secret"}, "--s3-access-key-file: open"},
	} {
		args := append([]string{"log", "serve", "--origin", "example.com/log", "--key", dir + "/log.key", "--storage", "posix:" + dir + "/st", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--insecure-plaintext"}, c.args...)
		_, stderr, code := run(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", c.args, code, stderr, c.want)
		}
	}
}

func TestEveryCommandHasHelpWithAnExample(t *testing.T) {
	var walk func(path []string)
	walk = func(path []string) {
		out, _, code := run(t, nil, append(path, "--help")...)
		if code != 0 {
			t.Errorf("cairn %s --help: exit %d", strings.Join(path, " "), code)
			return
		}
		sub := subcommands(out)
		if len(sub) == 0 && !strings.Contains(out, "Examples:") {
			t.Errorf("cairn %s --help has no example", strings.Join(path, " "))
		}
		for _, s := range sub {
			walk(append(append([]string{}, path...), s))
		}
	}
	walk(nil)
}

// subcommands lists the "Available Commands" of a cobra help text.
func subcommands(help string) []string {
	_, rest, ok := strings.Cut(help, "Available Commands:\n")
	if !ok {
		return nil
	}
	var out []string
	for _, line := range strings.Split(rest, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			break
		}
		if f[0] != "help" && f[0] != "completion" {
			out = append(out, f[0])
		}
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
