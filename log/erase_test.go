package log

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Subject identifiers and plaintext markers that must never reach storage.
const (
	subjectAlice = "subject-alice-7f3e91"
	subjectBob   = "subject-bob-22c4a0"
	subjectCarol = "subject-carol-90d1b7"
	// plainMarker is in a record without subjects: finding it proves the
	// storage grep looks where records are stored.
	plainMarker = "PLAIN-CONTROL-MARKER-5b1c"
)

func marker(subject string) string { return "PLAINTEXT-MARKER-" + subject }

// writeKEK writes a new key-encryption key file (0600) into dir.
func writeKEK(t testing.TB, dir, name string) string {
	t.Helper()
	k, err := GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func appendSubject(t testing.TB, api cairnv1.LogClient, payload string, wait bool, subjects ...string) *cairnv1.AppendResponse {
	t.Helper()
	resp, err := api.Append(context.Background(), &cairnv1.AppendRequest{
		Payload:             []byte(payload),
		ContentType:         "application/json",
		IdempotencyKey:      "key-" + payload,
		TimestampUnixMillis: uint64(time.Now().UnixMilli()),
		Subject:             subjects,
		WaitForReceipt:      wait,
	})
	if err != nil {
		t.Fatalf("Append(%q, %v): %v", payload, subjects, err)
	}
	return resp
}

// decrypted returns GetEntries' records for [0, n).
func decrypted(t testing.TB, tl *testLog, n uint64) []*cairnv1.Record {
	t.Helper()
	var out []*cairnv1.Record
	for uint64(len(out)) < n {
		resp, err := tl.api.GetEntries(context.Background(), &cairnv1.GetEntriesRequest{Start: uint64(len(out)), Count: n - uint64(len(out)), Decrypt: true})
		if err != nil {
			t.Fatalf("GetEntries decrypt: %v", err)
		}
		if len(resp.Records) != len(resp.Entries) {
			t.Fatalf("%d records for %d entries", len(resp.Records), len(resp.Entries))
		}
		out = append(out, resp.Records...)
	}
	return out
}

// getRecord answers GET /record/N.
func getRecord(t testing.TB, tl *testLog, index uint64) record.Decoded {
	t.Helper()
	b := tl.get(t, fmt.Sprintf("/record/%d", index))
	var d record.Decoded
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("GET /record/%d: %v\n%s", index, err, b)
	}
	return d
}

// grepTree returns the files under root holding needle.
func grepTree(t testing.TB, root, needle string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil // a file removed while walking, a socket
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		if bytes.Contains(b, []byte(needle)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// The whole promise of #13 on each storage driver: records of three
// subjects and one plain record; erase one subject; its records are
// unreadable through every API and absent from the raw storage, the other
// subjects' records read back byte for byte, every leaf still verifies
// with x/mod, an old receipt still verifies, and the erasure record is in the log.
func TestErasureLeavesHistoryIntactAndContentGone(t *testing.T) {
	t.Run("posix", func(t *testing.T) {
		dir := t.TempDir()
		testErasure(t, dir, func(c *Config) { c.Storage = "posix:" + filepath.Join(dir, "log") })
	})
	t.Run("mysql+s3", func(t *testing.T) {
		dir := t.TempDir()
		aws := testEnginesIn(t, filepath.Join(dir, "engines"))
		testErasure(t, dir, func(c *Config) { c.Storage, c.AWS, c.CheckpointInterval = "mysql+s3", aws, time.Second })
	})
}

func testErasure(t *testing.T, dir string, storage func(*Config)) {
	kek := writeKEK(t, t.TempDir(), "log.kek")
	tl := newTestLogWith(t, func(c *Config) { storage(c); c.KEKFile = kek })

	type sent struct {
		subjects []string
		payload  string
		index    uint64
		leaf     []byte
	}
	var recs []sent
	add := func(payload string, subjects ...string) *cairnv1.AppendResponse {
		r := appendSubject(t, tl.api, payload, false, subjects...)
		recs = append(recs, sent{subjects, payload, r.Index, r.Leaf})
		return r
	}
	for _, s := range []string{subjectAlice, subjectBob, subjectCarol} {
		for i := range 2 {
			add(fmt.Sprintf(`{"note":%q,"n":%d}`, marker(s), i), s)
		}
	}
	add(fmt.Sprintf(`{"note":%q,"both":true}`, marker(subjectAlice)+marker(subjectBob)), subjectBob, subjectAlice)
	// POST /add with the Cairn-Subject header.
	code, body := postAdd(t, tl.base, []byte(`{"note":"`+marker(subjectCarol)+`-http"}`), http.Header{
		"Content-Type": {"application/json"}, "Idempotency-Key": {"http-carol"}, "Cairn-Subject": {subjectCarol},
	})
	if code != http.StatusOK {
		t.Fatalf("POST /add with Cairn-Subject: %d %s", code, body)
	}
	var httpIndex uint64
	fmt.Sscan(body, &httpIndex)
	recs = append(recs, sent{[]string{subjectCarol}, `{"note":"` + marker(subjectCarol) + `-http"}`, httpIndex, nil})
	plain := appendGRPC(t, tl.api, plainMarker)
	// An old receipt of one of alice's records.
	old := appendSubject(t, tl.api, `{"note":"`+marker(subjectAlice)+`-receipt"}`, true, subjectAlice)
	recs = append(recs, sent{[]string{subjectAlice}, `{"note":"` + marker(subjectAlice) + `-receipt"}`, old.Index, old.Leaf})
	verifyReceipt(t, tl.vkey, old.Receipt, old.Leaf)

	n := uint64(len(recs) + 1)
	tl.waitForSize(t, tl.vkey, int64(n))
	// A retried sealed record is the same leaf at the same index.
	s0, err := record.DecodeSealed(recs[0].leaf)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tl.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte(recs[0].payload), ContentType: "application/json",
		IdempotencyKey: "key-" + recs[0].payload, TimestampUnixMillis: s0.Timestamp, Subject: []string{subjectAlice}})
	if err != nil || again.Index != recs[0].index || !again.Duplicate || !bytes.Equal(again.Leaf, recs[0].leaf) {
		t.Fatalf("a retried sealed record: %v, index %d (first %d)", err, again.GetIndex(), recs[0].index)
	}

	// Before erasure every record reads back byte for byte.
	before := decrypted(t, tl, n)
	for _, r := range recs {
		got := before[r.index]
		if got.State != record.StateDecrypted {
			t.Fatalf("entry %d: state %s (%s) before erasure", r.index, got.State, got.Detail)
		}
		dr, err := record.Decode(got.Record)
		if err != nil || string(dr.Payload) != r.payload {
			t.Fatalf("entry %d decrypts to %q (%v), want %q", r.index, dr.Payload, err, r.payload)
		}
	}
	if before[plain.Index].State != record.StatePlain || !bytes.Equal(before[plain.Index].Record, plain.Leaf) {
		t.Fatalf("plain entry %d reads %+v", plain.Index, before[plain.Index])
	}

	// Erase alice (admin: authentication is off, so anonymous is admin).
	er, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "GDPR art. 17 request 118"})
	if err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if er.AlreadyErased {
		t.Fatal("first erasure says already erased")
	}
	// Idempotent: again over gRPC and over HTTP, the same erasure record.
	er2, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "another reason"})
	if err != nil || !er2.AlreadyErased || er2.Index != er.Index || !bytes.Equal(er2.Leaf, er.Leaf) {
		t.Fatalf("second erasure: %+v, %v (first at %d)", er2, err, er.Index)
	}
	resp, err := http.Post(tl.base+"/erase", "application/json", strings.NewReader(`{"subject":"`+subjectAlice+`","reason":"http"}`))
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var hr EraseHTTPResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(hb, &hr) != nil || !hr.AlreadyErased || hr.Index != er.Index {
		t.Fatalf("POST /erase: %s %s", resp.Status, hb)
	}

	_, tree := tl.waitForSize(t, tl.vkey, int64(er.Index+1))
	after := decrypted(t, tl, uint64(tree.N))
	isAlice := func(r sent) bool {
		for _, s := range r.subjects {
			if s == subjectAlice {
				return true
			}
		}
		return false
	}
	for _, r := range recs {
		got := after[r.index]
		if isAlice(r) {
			if got.State != record.StateErased || got.Record != nil || got.ErasedAtUnixMillis != er.ErasedAtUnixMillis {
				t.Fatalf("alice's entry %d after erasure: %+v", r.index, got)
			}
			if d := getRecord(t, tl, r.index); d.State != record.StateErased || d.Record != nil || !strings.HasPrefix(d.Detail, "erased on ") {
				t.Fatalf("GET /record/%d after erasure: %+v", r.index, d)
			}
			continue
		}
		if got.State != record.StateDecrypted || !bytes.Equal(got.Record, before[r.index].Record) {
			t.Fatalf("entry %d of %v changed by alice's erasure: %+v", r.index, r.subjects, got)
		}
		if d := getRecord(t, tl, r.index); d.State != record.StateDecrypted || !bytes.Equal(d.Record, before[r.index].Record) {
			t.Fatalf("GET /record/%d: %+v", r.index, d)
		}
	}

	// The erasure record is in the log: who, when, which hash, why.
	er0, err := record.Decode(er.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	var payload ErasureRecord
	if err := json.Unmarshal(er0.Payload, &payload); err != nil || er0.ContentType != ErasureContentType {
		t.Fatalf("erasure record %q: %v", er0.Payload, err)
	}
	if payload.SubjectHash != hex.EncodeToString(er.SubjectHash) || payload.ErasedBy != record.Anonymous || payload.Reason != "GDPR art. 17 request 118" || payload.ErasedAt == "" {
		t.Fatalf("erasure record says %+v", payload)
	}
	if strings.Contains(string(er.Leaf), subjectAlice) {
		t.Fatal("the erasure record names the subject")
	}

	// Every leaf still verifies with x/mod (what cairn audit checks), the
	// erasure record among them, and the old receipt still verifies.
	leaves := verifyWithXMod(t, tl, tree)
	if !bytes.Equal(leaves[er.Index], er.Leaf) {
		t.Fatalf("entry %d is not the erasure record", er.Index)
	}
	verifyReceipt(t, tl.vkey, old.Receipt, old.Leaf)
	for _, r := range recs {
		if r.leaf != nil && !bytes.Equal(leaves[r.index], r.leaf) {
			t.Fatalf("leaf %d changed", r.index)
		}
	}

	// Appending for an erased subject is refused; nothing is sequenced.
	_, err = tl.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte("x"), Subject: []string{subjectAlice}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "erased") {
		t.Fatalf("append for an erased subject: %v", err)
	}

	// Raw storage: no plaintext of any subject, no subject identifier; the
	// plain control record is found, so the grep looks in the right place.
	if err := tl.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if hits := grepTree(t, dir, plainMarker); len(hits) == 0 {
		t.Fatalf("the plain control marker is nowhere under %s: the grep does not see the stored records", dir)
	}
	for _, s := range []string{subjectAlice, subjectBob, subjectCarol} {
		for _, needle := range []string{s, marker(s)} {
			if hits := grepTree(t, dir, needle); len(hits) > 0 {
				t.Errorf("%q is stored in clear: %v", needle, hits)
			}
		}
	}
}

// A subject under a legal hold is not erased: the seam refuses with
// FailedPrecondition, the key stays, the records stay readable.
func TestErasureIsRefusedUnderLegalHold(t *testing.T) {
	kek := writeKEK(t, t.TempDir(), "log.kek")
	tl := newTestLogWith(t, func(c *Config) { c.KEKFile = kek })
	r := appendSubject(t, tl.api, `{"x":1}`, false, subjectBob)
	held := tl.keys.hash(subjectBob)
	tl.Log.subjectHold = func(_ context.Context, h []byte) (bool, string) {
		return bytes.Equal(h, held[:]), "litigation hold LH-7"
	}
	_, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectBob, Reason: "request"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "legal hold") || !strings.Contains(err.Error(), "LH-7") {
		t.Fatalf("erasure under a hold: %v", err)
	}
	resp, err := http.Post(tl.base+"/erase", "application/json", strings.NewReader(`{"subject":"`+subjectBob+`","reason":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("POST /erase under a hold: %s", resp.Status)
	}
	tl.waitForSize(t, tl.vkey, int64(r.Index+1))
	if d := getRecord(t, tl, r.Index); d.State != record.StateDecrypted {
		t.Fatalf("held subject's record: %+v", d)
	}
	// Bad requests: no reason, no subject.
	for _, req := range []*cairnv1.EraseRequest{{Subject: subjectCarol}, {Reason: "r"}, {Subject: "a\u202eb", Reason: "r"}} {
		if _, err := tl.api.Erase(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Erase(%+v): %v", req, err)
		}
	}
}

// The KEK cannot be lost silently: a log whose key store holds keys does
// not start without it, with another one, or with a readable or malformed
// file; a log without a KEK refuses records naming subjects and writes nothing.
func TestWrongOrMissingKEKFailsAtStart(t *testing.T) {
	for _, driver := range []string{"posix", "mysql+s3"} {
		t.Run(driver, func(t *testing.T) { testWrongOrMissingKEK(t, driver) })
	}
}

func testWrongOrMissingKEK(t *testing.T, driver string) {
	dir := t.TempDir()
	kek := writeKEK(t, dir, "log.kek")
	skey, vkey := newKey(t, testOrigin)
	logDir := filepath.Join(dir, "log")
	cfg := testConfig(logDir, skey)
	env := childDriverEnv(t, driver)
	if len(env) > 0 {
		cfg.Storage, cfg.CheckpointInterval = "mysql+s3", time.Second
		if err := json.Unmarshal([]byte(strings.TrimPrefix(env[0], envChildAWS+"=")), &cfg.AWS); err != nil {
			t.Fatal(err)
		}
	}
	env = append(env, envChildKEK+"="+kek)
	c := startChild(t, logDir, skey, env...)
	r := appendSubject(t, c.api, `{"x":"sealed"}`, false, subjectAlice)
	c.waitForSize(t, vkey, int64(r.Index+1))
	c.stop(t)

	other := writeKEK(t, dir, "other.kek")
	readable := writeKEK(t, dir, "readable.kek")
	if err := os.Chmod(readable, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.kek")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	for name, tc := range map[string]struct{ file, want string }{
		"missing":  {"", "required"},
		"other":    {other, "does not unwrap"},
		"readable": {readable, "chmod 600"},
		"garbage":  {garbage, "not a key-encryption key"},
		"absent":   {filepath.Join(dir, "nope.kek"), "no such file"},
	} {
		c := cfg
		c.KEKFile = tc.file
		_, err := New(context.Background(), c)
		var fe *fielderr.Error
		if err == nil || !errors.As(err, &fe) || fe.Field != "Config.KEKFile" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s KEK: %v (want Config.KEKFile: …%s…)", name, err, tc.want)
		}
	}

	// The right KEK opens it again.
	c = startChild(t, logDir, skey, env...)
	if d := getRecord(t, c.testLog, r.Index); d.State != record.StateDecrypted {
		t.Fatalf("after restart: %+v", d)
	}
	c.stop(t)

	if driver != "posix" {
		return
	}
	// A fresh log without a KEK refuses subjects and sequences nothing.
	plain := newTestLog(t)
	_, err := plain.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte(marker(subjectAlice)), Subject: []string{subjectAlice}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "kek-file") {
		t.Fatalf("append with a subject to a log without KEK: %v", err)
	}
	a := appendGRPC(t, plain.api, "after")
	if a.Index != 0 {
		t.Fatalf("the refused record took an index: next is %d", a.Index)
	}
}

// A flipped byte in a sealed record's stored ciphertext is detected and
// reported at its index; its neighbours still read.
func TestTamperedCiphertextIsReportedAtItsIndex(t *testing.T) {
	t.Run("posix", func(t *testing.T) {
		testTamperedCiphertext(t, func(*Config) {}, func(tl *testLog, key string, mutate func([]byte)) {
			p := filepath.Join(tl.dir, filepath.FromSlash(key))
			b := readFile(t, p)
			mutate(b)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("mysql+s3", func(t *testing.T) {
		aws := testEngines(t)
		testTamperedCiphertext(t, func(c *Config) { c.Storage, c.AWS, c.CheckpointInterval = "mysql+s3", aws, time.Second },
			func(tl *testLog, key string, mutate func([]byte)) { rewriteObject(t, aws, key, mutate) })
	})
}

// rewriteObject changes an object in the test bucket behind the log's back.
func rewriteObject(t *testing.T, c AWSConfig, key string, mutate func([]byte)) {
	t.Helper()
	ak, _ := os.ReadFile(c.S3AccessKeyFile)
	sk, _ := os.ReadFile(c.S3SecretKeyFile)
	cl := s3.New(s3.Options{Region: c.S3Region, BaseEndpoint: aaws.String(c.S3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(strings.TrimSpace(string(ak)), strings.TrimSpace(string(sk)), "")})
	ctx := context.Background()
	o, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aaws.String(c.S3Bucket), Key: aaws.String(key)})
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	b, err := io.ReadAll(o.Body)
	o.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	mutate(b)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aaws.String(c.S3Bucket), Key: aaws.String(key), Body: bytes.NewReader(b)}); err != nil {
		t.Fatalf("rewriting %s: %v", key, err)
	}
}

func testTamperedCiphertext(t *testing.T, storage func(*Config), tamper func(tl *testLog, key string, mutate func([]byte))) {
	kek := writeKEK(t, t.TempDir(), "log.kek")
	tl := newTestLogWith(t, func(c *Config) { storage(c); c.KEKFile = kek })
	var last *cairnv1.AppendResponse
	for i := range 3 {
		last = appendSubject(t, tl.api, fmt.Sprintf(`{"i":%d}`, i), false, subjectCarol)
	}
	tl.waitForSize(t, tl.vkey, 3)
	victim := last.Index - 1 // entry 1
	// Entry bundles are [u16 length ‖ leaf]…; flip the victim's last byte (in the GCM tag).
	tamper(tl, "tile/entries/000.p/3", func(b []byte) {
		off := 0
		for i := uint64(0); ; i++ {
			n := int(b[off])<<8 | int(b[off+1])
			if i == victim {
				b[off+2+n-1] ^= 0x40
				return
			}
			off += 2 + n
		}
	})
	recs := decrypted(t, tl, 3)
	if recs[victim].State != record.StateTampered || !strings.Contains(recs[victim].Detail, fmt.Sprintf("entry %d", victim)) {
		t.Fatalf("tampered entry %d reads %+v", victim, recs[victim])
	}
	if d := getRecord(t, tl, victim); d.State != record.StateTampered {
		t.Fatalf("GET /record/%d: %+v", victim, d)
	}
	for _, i := range []uint64{0, 2} {
		if recs[i].State != record.StateDecrypted {
			t.Fatalf("neighbour %d: %+v", i, recs[i])
		}
	}
}

// kill -9 at either step of an erasure leaves no half state: before the
// key is destroyed, nothing changed and the records read; after it, the
// records read erased, and the retried (unacknowledged) erasure completes
// with one erasure record.
func TestErasureSurvivesKill9(t *testing.T) {
	for _, driver := range []string{"posix", "mysql+s3"} {
		for _, step := range []string{"before-destroy", "after-destroy"} {
			t.Run(driver+"/"+step, func(t *testing.T) { testErasureSurvivesKill9(t, driver, step) })
		}
	}
}

// childDriverEnv is the child environment for a log on driver: nothing for
// posix, fresh engines for mysql+s3.
func childDriverEnv(t *testing.T, driver string) []string {
	if driver != "mysql+s3" {
		return nil
	}
	j, err := json.Marshal(testEngines(t))
	if err != nil {
		t.Fatal(err)
	}
	return []string{envChildAWS + "=" + string(j)}
}

func testErasureSurvivesKill9(t *testing.T, driver, step string) {
	dir := t.TempDir()
	kek := writeKEK(t, t.TempDir(), "log.kek")
	skey, vkey := newKey(t, testOrigin)
	env := append(childDriverEnv(t, driver), envChildKEK+"="+kek)
	c := startChild(t, dir, skey, append(env, envChildEraseCrash+"="+step)...)
	r := appendSubject(t, c.api, `{"victim":true}`, false, subjectAlice)
	keep := appendSubject(t, c.api, `{"keep":true}`, false, subjectBob)
	c.waitForSize(t, vkey, 2)
	if _, err := c.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "crash test"}); err == nil {
		t.Fatal("the erasure was acknowledged by a process killed during it")
	}
	if err := c.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}

	c = startChild(t, dir, skey, env...)
	c.waitForSize(t, vkey, 2)
	state := decrypted(t, c.testLog, 2)[r.Index].State
	want := map[string]string{"before-destroy": record.StateDecrypted, "after-destroy": record.StateErased}[step]
	if state != want {
		t.Fatalf("after kill -9 %s: alice's record is %s, want %s", step, state, want)
	}
	// The retry completes the erasure exactly once.
	er, err := c.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "crash test"})
	if err != nil {
		t.Fatalf("retried erasure: %v", err)
	}
	if er.AlreadyErased != (step == "after-destroy") {
		t.Fatalf("retry after %s: already_erased=%v", step, er.AlreadyErased)
	}
	er2, err := c.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "crash test"})
	if err != nil || er2.Index != er.Index {
		t.Fatalf("second retry: %v, index %d (first %d)", err, er2.GetIndex(), er.Index)
	}
	_, tree := c.waitForSize(t, vkey, int64(er.Index+1))
	recs := decrypted(t, c.testLog, uint64(tree.N))
	if recs[r.Index].State != record.StateErased || recs[keep.Index].State != record.StateDecrypted {
		t.Fatalf("after the retried erasure: alice %s, bob %s", recs[r.Index].State, recs[keep.Index].State)
	}
	if tree.N != 3 {
		t.Fatalf("tree has %d entries, want 2 records and 1 erasure record", tree.N)
	}
	c.stop(t)
}

// With mysql+s3, an erasure on one frontend reaches every frontend: the
// key store is one table, reads always consult it, so another frontend
// shows the record erased at once, and refuses new records for the subject
// once its one-second append cache has expired.
func TestErasureOnOneFrontendReachesTheOthers(t *testing.T) {
	env := childDriverEnv(t, "mysql+s3")
	kek := writeKEK(t, t.TempDir(), "log.kek")
	env = append(env, envChildKEK+"="+kek)
	skey, vkey := newKey(t, testOrigin)
	a := startChild(t, t.TempDir(), skey, env...)
	b := startChild(t, t.TempDir(), skey, env...)
	r := appendSubject(t, a.api, `{"on":"a"}`, false, subjectAlice)
	a.waitForSize(t, vkey, int64(r.Index+1))
	if got := decrypted(t, a.testLog, r.Index+1)[r.Index]; got.State != record.StateDecrypted {
		t.Fatalf("before erasure, frontend a reads %+v", got)
	}
	if _, err := b.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectAlice, Reason: "via b"}); err != nil {
		t.Fatal(err)
	}
	if got := decrypted(t, a.testLog, r.Index+1)[r.Index]; got.State != record.StateErased {
		t.Fatalf("right after the erasure on b, frontend a reads %+v", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := a.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte("late"), Subject: []string{subjectAlice}})
		if status.Code(err) == codes.FailedPrecondition {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("frontend a still accepts records for the erased subject: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Where record contents are public (--read-access public), sealed records
// are public only as ciphertext: plaintext needs the read role on every API,
// and erasure needs the admin role.
func TestSealedRecordsNeedTheReadRoleAndErasureTheAdminRole(t *testing.T) {
	kek := writeKEK(t, t.TempDir(), "log.kek")
	s := newSecureLog(t, func(c *Config) { c.KEKFile = kek })
	ctx := context.Background()
	r, err := s.api.Append(bearer(ctx, s.tokens["writer"]), &cairnv1.AppendRequest{Payload: []byte(marker(subjectBob)), Subject: []string{subjectBob}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.httpClient(nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, body := s.do(t, c, http.MethodGet, "/checkpoint", "", "")
		if code == http.StatusOK && strings.Contains(body, "\n1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size 1: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, body := s.do(t, c, http.MethodGet, "/tile/entries/000.p/1", "", ""); code != http.StatusOK || strings.Contains(body, marker(subjectBob)) {
		t.Fatalf("public entry bundle: %d, plaintext in it: %v", code, strings.Contains(body, marker(subjectBob)))
	}
	for _, p := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {s.tokens["writer"], http.StatusForbidden}, {s.tokens["reader"], http.StatusOK}} {
		code, _, body := s.do(t, c, http.MethodGet, fmt.Sprintf("/record/%d", r.Index), p.token, "")
		if code != p.want || (code == http.StatusOK) != strings.Contains(body, `"state":"decrypted"`) {
			t.Errorf("GET /record (token %v): %d %s, want %d", p.token != "", code, body, p.want)
		}
	}
	if resp, err := s.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 0, Count: 1}); err != nil || bytes.Contains(resp.Entries[0], []byte(marker(subjectBob))) || len(resp.Records) != 0 {
		t.Fatalf("public GetEntries: %v", err)
	}
	if _, err := s.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 0, Count: 1, Decrypt: true}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetEntries decrypt without a token: %v", err)
	}
	if _, err := s.api.GetEntries(bearer(ctx, s.tokens["writer"]), &cairnv1.GetEntriesRequest{Start: 0, Count: 1, Decrypt: true}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetEntries decrypt with an append-only token: %v", err)
	}
	resp, err := s.api.GetEntries(bearer(ctx, s.tokens["reader"]), &cairnv1.GetEntriesRequest{Start: 0, Count: 1, Decrypt: true})
	if err != nil || resp.Records[0].State != record.StateDecrypted {
		t.Fatalf("GetEntries decrypt with a read token: %v", err)
	}
	if dr, err := record.Decode(resp.Records[0].Record); err != nil || string(dr.Payload) != marker(subjectBob) || dr.Submitter != "writer" {
		t.Fatalf("decrypted %+v, %v", dr, err)
	}

	erase := &cairnv1.EraseRequest{Subject: subjectBob, Reason: "request 9"}
	if _, err := s.api.Erase(bearer(ctx, s.tokens["reader"]), erase); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Erase with a read token: %v", err)
	}
	if code, _, body := s.do(t, c, http.MethodPost, "/erase", s.tokens["writer"], `{"subject":"`+subjectBob+`","reason":"r"}`); code != http.StatusForbidden {
		t.Errorf("POST /erase with an append token: %d %s", code, body)
	}
	er, err := s.api.Erase(bearer(ctx, s.tokens["operator"]), erase)
	if err != nil {
		t.Fatalf("Erase with the admin role: %v", err)
	}
	if e, _ := record.Decode(er.Leaf); e.Submitter != "operator" {
		t.Fatalf("the erasure record names %q, not the admin who asked", e.Submitter)
	}
}

// TestSubjectHoldRefusesErasureUntilReleased: a legal hold placed on a data
// subject through the admin API (the log stores only the keyed hash) refuses
// the subject's erasure and keeps its records from pruning; once released,
// the erasure goes through. Holds on other subjects change nothing.
func TestSubjectHoldRefusesErasureUntilReleased(t *testing.T) {
	kek := writeKEK(t, t.TempDir(), "log.kek")
	tl := newTestLogWith(t, func(c *Config) { c.KEKFile = kek })
	r := appendSubject(t, tl.api, `{"x":1}`, false, subjectBob)
	appendSubject(t, tl.api, `{"x":2}`, false, subjectCarol)
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(tl.base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post("/holds", `{"subject":"`+subjectBob+`","reason":"regulator inquiry 88"}`)
	if code != http.StatusOK {
		t.Fatalf("POST /holds {subject}: %d %s", code, body)
	}
	var h Hold
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	if want := tl.keys.hash(subjectBob); h.SubjectHash != hex.EncodeToString(want[:]) || strings.Contains(body, subjectBob) {
		t.Fatalf("hold %s: want the keyed hash of the subject and never the identifier", body)
	}
	if held, _ := tl.bundleHeldForTest(t, subjectBob); !held {
		t.Error("a subject hold does not keep the subject's records from pruning")
	}
	_, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectBob, Reason: "request"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "regulator inquiry 88") {
		t.Fatalf("erasure of a held subject: %v", err)
	}
	if _, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectCarol, Reason: "request"}); err != nil {
		t.Fatalf("erasure of another subject: %v", err)
	}
	if code, body := post("/holds/"+h.ID+"/release", `{"reason":"inquiry closed"}`); code != http.StatusOK {
		t.Fatalf("release: %d %s", code, body)
	}
	if _, err := tl.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: subjectBob, Reason: "request"}); err != nil {
		t.Fatalf("erasure after the release: %v", err)
	}
	tl.waitForSize(t, tl.vkey, int64(r.Index+1))
	if d := getRecord(t, tl, r.Index); d.State == record.StateDecrypted {
		t.Fatalf("the released subject's record still reads: %+v", d)
	}
	if code, _ := post("/holds", `{"subject":"a\u202eb","reason":"r"}`); code != http.StatusBadRequest {
		t.Errorf("a subject hold with a bidi control: %d, want 400", code)
	}
}

// bundleHeldForTest reports whether the log's holds keep the first two
// records' partial bundle from pruning (one of them names subject).
func (tl *testLog) bundleHeldForTest(t *testing.T, subject string) (bool, error) {
	t.Helper()
	tl.waitForSize(t, tl.vkey, 2)
	holds, err := tl.Holds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var eb api.EntryBundle
	if err := eb.UnmarshalText(tl.get(t, "/tile/entries/000.p/2")); err != nil {
		t.Fatal(err)
	}
	principals, subjects := map[string]bool{}, map[string]bool{}
	for _, h := range holds {
		if h.SubjectHash != "" {
			subjects[h.SubjectHash] = true
		}
	}
	for _, leaf := range eb.Entries {
		if held, err := leafHeld(leaf, principals, subjects); err != nil || held {
			return true, err
		}
	}
	return false, nil
}
