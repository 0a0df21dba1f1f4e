package integration

// The explorer (/ui/) in a real headless Chromium (Debian's chromium package,
// driven by chromedp) against a real `cairn dev`: the status page with its
// witness rows and charts, records, a record page, receipts verified in the
// browser by the WebAssembly verifier (good: green; tampered: red, naming
// what failed), hostile record content rendered as text, a token-protected
// log's prompt, a 360 px wide screen, keyboard navigation and the first
// load's size.
//
// Screenshots: with CAIRN_UPDATE_SCREENSHOTS=1 the test rewrites
// docs/img/explorer-*.png (the ones docs/explorer.md and the README show);
// otherwise it writes them to its temporary directory only, so make test
// leaves the tree clean.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/supervisor"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"golang.org/x/mod/sumdb/note"
)

// chromiumPath finds Debian's chromium; the test skips without it unless
// CAIRN_REQUIRE_BROWSER is set (make test installs it and sets it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CAIRN_REQUIRE_BROWSER") != "" {
		t.Fatal("chromium is not installed (scripts/test.d/chromium.sh installs it)")
	}
	t.Skip("chromium is not installed (apt-get install chromium, or make test)")
	return ""
}

// browser starts a headless Chromium for the test. The demo's certificates
// come from its own CA, which this throwaway profile does not know, so
// certificate errors are ignored here: the TLS paths are tested elsewhere,
// this test is about the page.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("no-sandbox", true), // root in a container
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, with no deadline (a deadline on it
	// would bound the browser's life); later steps have theirs.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// stepTimeout bounds one browser step (generous: a loaded 2-core box).
const stepTimeout = 90 * time.Second

// step runs browser actions in order within stepTimeout.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	browserGet(t, ctx, what, chromedp.Steps(actions...))
}

// browserGet runs one browser action within stepTimeout and returns its value.
func browserGet[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		defer hcancel()
		html, _ := chromedp.Run(hctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage main:\n%s", what, err, html)
	}
	return v
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return browserGet(t, ctx, "evaluating "+expr, chromedp.Evaluate[T](expr))
}

// text is an element's textContent.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return browserGet(t, ctx, "text of "+sel, chromedp.TextContent(chromedp.CSS(sel)))
}

// visible waits for an element to be visible.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// open loads a page of the explorer afresh (from a blank page, so that a
// hash change cannot leave the previous page's elements matching).
func open(url string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Navigate("about:blank"), chromedp.Navigate(url))
}

// click clicks an element.
func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

// screenshot saves the page as docs/img/explorer-NAME.png when
// CAIRN_UPDATE_SCREENSHOTS is set, else under the test's directory.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := browserGet(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	out := filepath.Join(dir, "explorer-"+name+".png")
	if os.Getenv("CAIRN_UPDATE_SCREENSHOTS") != "" {
		out = filepath.Join("..", "docs", "img", "explorer-"+name+".png")
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// demo is a running cairn dev with its data directory.
type demo struct {
	dir, http string
	hc        *http.Client
	token     string
}

func startDemo(t *testing.T) *demo {
	t.Helper()
	dir := t.TempDir()
	base := freeRun(t, 11)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	dev, err := supervisor.Start(supervisor.Command{Name: "cairn dev", Path: cairnBin,
		Args: []string{"dev", "--data", dir, "--http", addr(0), "--grpc", addr(1), "--witness-port", fmt.Sprint(base + 2), "--mirror-port", fmt.Sprint(base + 9),
			"--index-port", fmt.Sprint(base + 10)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Kill() })
	eventually(t, 2*time.Minute, func() error {
		if dev.Exited() {
			t.Fatalf("cairn dev exited (%v):\n%s", dev.Wait(), dev.Output())
		}
		if !strings.Contains(dev.Output(), "Cairn is running") {
			return errors.New("cairn dev did not start")
		}
		return nil
	})
	if want := "explorer     https://" + addr(0) + "/ui/"; !strings.Contains(dev.Output(), want) {
		t.Errorf("cairn dev does not print the explorer URL (%q):\n%s", want, dev.Output())
	}
	roots, err := certpool.Load(dir + "/tls/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(dir + "/demo.token")
	if err != nil {
		t.Fatal(err)
	}
	return &demo{dir: dir, http: addr(0), token: strings.TrimSpace(string(tok)),
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
}

// add appends a record over POST /add and returns its index.
func (d *demo) add(t *testing.T, payload, contentType string, headers map[string]string) uint64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+d.http+"/add", strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", contentType)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	idx, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("POST /add: %s %q", resp.Status, b)
	}
	return idx
}

// status reads the explorer's status API.
func (d *demo) status(t *testing.T) (s struct {
	TreeSize  uint64 `json:"tree_size"`
	Witnesses []struct {
		Name           string `json:"name"`
		CosignedLatest bool   `json:"cosigned_latest"`
		Size           uint64 `json:"size"`
	} `json:"witnesses"`
}) {
	t.Helper()
	resp, err := d.hc.Get("https://" + d.http + "/ui/api/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// XSS payloads: each would run script or load an image if it reached the
// page as markup; window.__xss is set if any ran.
const (
	xssScript = `<script>window.__xss=1</script>`
	xssImg    = `"><img src=x onerror="window.__xss=1">`
	xssURL    = `javascript:window.__xss=1`
)

func TestExplorerInTheBrowser(t *testing.T) {
	chromiumPath(t) // skip before starting anything
	d := startDemo(t)
	shots := t.TempDir()

	jsonIdx := d.add(t, `{"event":"login","user":"alice","mfa":true}`, "application/json", nil)
	textIdx := d.add(t, "the payroll export ran at 02:00 and wrote 1,204 rows", "text/plain", nil)
	binIdx := d.add(t, "\x00\x01\x02binary\xff\xfe", "application/octet-stream", nil)
	xssIdx := d.add(t, xssScript+xssImg+xssURL, "text/html", map[string]string{"Idempotency-Key": xssImg})
	for i := range 6 {
		d.add(t, fmt.Sprintf(`{"event":"deploy","service":"billing","n":%d}`, i), "application/json", nil)
	}
	// Wait for a checkpoint covering them, cosigned by all three witnesses
	// (the log brings a witness slower than the quorum up to date).
	eventually(t, 2*time.Minute, func() error {
		s := d.status(t)
		if s.TreeSize < xssIdx+7 {
			return fmt.Errorf("tree size %d", s.TreeSize)
		}
		for _, w := range s.Witnesses {
			if w.Size < s.TreeSize {
				return fmt.Errorf("witness %s at %d of %d", w.Name, w.Size, s.TreeSize)
			}
		}
		return nil
	})

	ctx := browser(t)
	ui := "https://" + d.http + "/ui/"

	t.Run("status", func(t *testing.T) {
		step(t, ctx, "load the status page", open(ui), visible(`#witnesses tbody tr`), visible(`#chart-records`))
		if rows := eval[int](t, ctx, `document.querySelectorAll('#witnesses tbody tr').length`); rows != 3 {
			t.Errorf("%d witness rows, want 3", rows)
		}
		if cp := text(t, ctx, `#checkpoint`); !strings.HasPrefix(cp, "localhost/cairn-dev\n") {
			t.Errorf("checkpoint shown: %q", cp)
		}
		if bars := eval[int](t, ctx, `document.querySelectorAll('#chart-records rect.bar').length`); bars < 1 {
			t.Errorf("the records chart has no bars")
		}
		witnesses := text(t, ctx, `#witnesses`)
		for _, w := range []string{"witness-eu", "witness-us", "witness-ap"} {
			if !strings.Contains(witnesses, w) {
				t.Errorf("witness table lacks %s:\n%s", w, witnesses)
			}
		}
		// First load: every resource the page fetched, none of them the verifier.
		type resource struct {
			Name string  `json:"name"`
			Size float64 `json:"size"`
		}
		res := eval[[]resource](t, ctx, `[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].map(e => ({name: e.name, size: e.transferSize || e.encodedBodySize}))`)
		var total float64
		for _, r := range res {
			total += r.Size
			if strings.Contains(r.Name, ".wasm") || strings.Contains(r.Name, "wasm_exec") {
				t.Errorf("the status page loaded %s: the verifier must load only when verifying", r.Name)
			}
		}
		t.Logf("status page first load: %d resources, %.0f bytes", len(res), total)
		if total <= 0 || total >= 500*1024 {
			t.Errorf("first load %.0f bytes, want under 500 KB", total)
		}
		screenshot(t, ctx, shots, "status")
	})

	t.Run("records and a JSON record", func(t *testing.T) {
		step(t, ctx, "records page", open(ui+"#/records"), visible(`#records tbody tr`))
		if n := eval[int](t, ctx, `document.querySelectorAll('#records tbody tr').length`); n < 10 {
			t.Errorf("%d record rows, want ≥10", n)
		}
		screenshot(t, ctx, shots, "records")
		step(t, ctx, "open the JSON record", click(fmt.Sprintf(`#records a[href="#/record/%d"]`, jsonIdx)), visible(`#payload`))
		if payload := text(t, ctx, `#payload`); !strings.Contains(payload, `"user": "alice"`) {
			t.Errorf("JSON body not pretty-printed: %q", payload)
		}
		if hash, principal := text(t, ctx, `#leaf-hash`), text(t, ctx, `#principal`); len(hash) != 64 || principal != "demo-writer" {
			t.Errorf("leaf hash %q, principal %q", hash, principal)
		}
		screenshot(t, ctx, shots, "record")
	})

	t.Run("text and binary bodies", func(t *testing.T) {
		step(t, ctx, "text record", open(fmt.Sprintf("%s#/record/%d", ui, textIdx)), visible(`#payload`))
		if body := text(t, ctx, `#payload`); !strings.Contains(body, "1,204 rows") {
			t.Errorf("text body %q", body)
		}
		step(t, ctx, "binary record", open(fmt.Sprintf("%s#/record/%d", ui, binIdx)),
			chromedp.Poll[chromedp.Void](`document.querySelector('#payload') && document.querySelector('#payload').textContent.startsWith('00000000')`))
		if body := text(t, ctx, `#payload`); !strings.Contains(body, "00 01 02 62 69 6e") {
			t.Errorf("binary body not a hex dump: %q", body)
		}
	})

	t.Run("hostile record renders as text", func(t *testing.T) {
		step(t, ctx, "XSS record", open(fmt.Sprintf("%s#/record/%d", ui, xssIdx)), visible(`#payload`),
			chromedp.Sleep(300*time.Millisecond)) // an injected onerror would have fired by now
		if eval[bool](t, ctx, `window.__xss === 1 || document.querySelector('main script, main img, main a[href^="javascript:"]') !== null`) {
			t.Fatal("record content became markup or script")
		}
		if payload := text(t, ctx, `#payload`); payload != xssScript+xssImg+xssURL {
			t.Errorf("payload shown as %q, want the literal text", payload)
		}
		if env := text(t, ctx, `#envelope`); !strings.Contains(env, xssImg) {
			t.Errorf("idempotency key not shown as text: %q", env)
		}
		screenshot(t, ctx, shots, "xss")
	})

	t.Run("verify a good receipt", func(t *testing.T) {
		step(t, ctx, "verify from the record page",
			open(fmt.Sprintf("%s#/record/%d", ui, jsonIdx)),
			visible(`#verify-this`), click(`#verify-this`),
			visible(`#verify`), click(`#verify`),
			visible(`#verdict`))
		if ok := browserGet(t, ctx, "verdict", chromedp.AttributeValue(chromedp.CSS(`#verdict`), "data-ok")); ok.Value != "true" {
			t.Fatalf("a good receipt did not verify: %s", text(t, ctx, `#verdict`))
		}
		vkey := strings.TrimSpace(string(mustRead(t, d.dir+"/keys/log.vkey")))
		if keys := text(t, ctx, `#trusted-keys`); !strings.Contains(keys, vkey) || !strings.Contains(keys, "witness-eu") {
			t.Errorf("trusted keys shown: %q, want the log key %s and the witnesses", keys, vkey)
		}
		if color := eval[string](t, ctx, `getComputedStyle(document.querySelector('#verdict')).backgroundColor`); color != "rgb(230, 244, 234)" {
			t.Errorf("good verdict background %s, want green", color)
		}
		// A figure, not an assertion: one verification in the WebAssembly verifier.
		ms := eval[float64](t, ctx, `(() => {
			const leaf = new Uint8Array(0);
			const p = document.querySelector('#policy').value, r = document.querySelector('#receipt-input').value;
			const t0 = performance.now();
			for (let i = 0; i < 20; i++) cairnVerifyReceipt(p, r, leaf);
			return (performance.now() - t0) / 20;
		})()`)
		t.Logf("one receipt verification in WebAssembly: %.2f ms", ms)
		screenshot(t, ctx, shots, "verify-ok")
	})

	t.Run("verify a tampered receipt", func(t *testing.T) {
		// Flip one proof hash of the receipt on the page (the record is unchanged).
		if i := eval[int](t, ctx, `(() => {
				const ta = document.querySelector('#receipt-input');
				const lines = ta.value.split('\n');
				const i = lines.findIndex((l, n) => n > 1 && /^[A-Za-z0-9+/]{43}=$/.test(l));
				lines[i] = (lines[i][0] === 'A' ? 'B' : 'A') + lines[i].slice(1);
				ta.value = lines.join('\n');
				return i;
			})()`); i < 2 {
			t.Fatalf("no proof hash line in the receipt (%d)", i)
		}
		step(t, ctx, "verify tampered", click(`#verify`), visible(`#verdict[data-ok="false"]`))
		if failure := text(t, ctx, `#failure`); !strings.Contains(failure, fmt.Sprintf("does not match leaf %d", jsonIdx)) {
			t.Errorf("failure %q does not name what failed", failure)
		}
		if color := eval[string](t, ctx, `getComputedStyle(document.querySelector('#verdict')).backgroundColor`); color != "rgb(252, 232, 232)" {
			t.Errorf("bad verdict background %s, want red", color)
		}
		screenshot(t, ctx, shots, "verify-bad")

		// A policy that trusts another log key: the checkpoint fails it.
		_, otherKey, err := note.GenerateKey(rand.Reader, "localhost/cairn-dev")
		if err != nil {
			t.Fatal(err)
		}
		step(t, ctx, "verify with another policy",
			open(fmt.Sprintf("%s#/record/%d", ui, jsonIdx)),
			visible(`#verify-this`), click(`#verify-this`), visible(`#policy`),
			chromedp.SetValue(chromedp.CSS(`#policy`), "log "+otherKey+"\nquorum none\n"),
			click(`#verify`), visible(`#verdict[data-ok="false"]`))
		if v := text(t, ctx, `#verdict`); !strings.Contains(v, "The checkpoint fails the trusted policy") {
			t.Errorf("an untrusted log key: %q", v)
		}
	})

	t.Run("360 px wide", func(t *testing.T) {
		step(t, ctx, "narrow status page", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile, chromedp.EmulatePortrait),
			open(ui+"#/status"), visible(`#witnesses tbody tr`))
		if eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`) {
			t.Error("the status page scrolls sideways at 360 px")
		}
		screenshot(t, ctx, shots, "mobile")
		step(t, ctx, "narrow record page", open(fmt.Sprintf("%s#/record/%d", ui, jsonIdx)), visible(`#payload`))
		if eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`) {
			t.Error("the record page scrolls sideways at 360 px")
		}
		step(t, ctx, "back to desktop", chromedp.ResetViewport())
	})

	t.Run("keyboard navigation", func(t *testing.T) {
		step(t, ctx, "tab to Records", open(ui+"#/status"), visible(`#witnesses tbody tr`),
			// The skip link, Status, Records.
			chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab))
		if focused := eval[string](t, ctx, `document.activeElement.textContent`); focused != "Records" {
			t.Fatalf("three Tabs reach %q, want Records", focused)
		}
		step(t, ctx, "Enter", chromedp.KeyEvent(kb.Enter), visible(`#records tbody tr`))
		if hash := eval[string](t, ctx, `location.hash`); hash != "#/records" {
			t.Errorf("Enter on Records went to %q", hash)
		}
		step(t, ctx, "open a record by keyboard", chromedp.Focus(chromedp.CSS(`#records tbody a`)), chromedp.KeyEvent(kb.Enter), visible(`#envelope`))
	})

	// cairn dev runs an index on another origin over TLS, with the read
	// role required and CORS for the explorer: search works from the page.
	t.Run("search on the demo's index", func(t *testing.T) {
		step(t, ctx, "search asks for the token", open(ui+"#/search?principal=demo-writer&go=1"), visible(`#token-form`),
			chromedp.SendKeys(chromedp.CSS(`#token-input`), d.token), click(`#token-form button`))
		// Until the index has caught up, ask again (the same query, another
		// spelling of the hash, so the page routes anew).
		hashes := []string{"#/search?go=1&principal=demo-writer", "#/search?principal=demo-writer&go=1"}
		n := 0
		eventually(t, time.Minute, func() error {
			v := eval[[]string](t, ctx, `[...document.querySelectorAll('#hits tbody tr')].map(r => r.dataset.verified)`)
			if len(v) == 0 {
				n++
				eval[string](t, ctx, `location.hash = '`+hashes[n%2]+`'`)
			}
			if len(v) == 0 || slices.Contains(v, "false") {
				errText := eval[string](t, ctx, `(document.querySelector('#search-results .error') || {}).textContent || ''`)
				return fmt.Errorf("hits verified %v %s", v, errText)
			}
			return nil
		})
	})
}

// TestExplorerAsksForAToken: with --read-access authenticated the page asks
// for a token, keeps it in memory and sends it as a bearer token; status
// stays public.
func TestExplorerAsksForAToken(t *testing.T) {
	chromiumPath(t)
	// The demo provides the key, the access file and the demo token; the
	// log under test is one of its own on a fresh directory.
	d := startDemo(t)
	addr := testport.Addr(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // record contents are not for other users
		t.Fatal(err)
	}
	p := &proc{name: "log-auth", args: []string{"log", "serve", "--origin", "localhost/cairn-dev", "--key", d.dir + "/keys/log.key",
		"--storage", "posix:" + dir, "--http", addr, "--grpc", testport.Addr(t), "--insecure-plaintext",
		"--access", d.dir + "/access.txt", "--read-access", "authenticated", "--checkpoint-interval", "200ms"}}
	p.start(t)
	t.Cleanup(func() { p.kill9() })
	p.waitServing(t, "http://"+addr+"/readyz")
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/add", strings.NewReader("a record for readers only"))
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /add: %s", resp.Status)
	}
	eventually(t, time.Minute, func() error { return answers("http://"+addr+"/ui/api/record/0", http.StatusUnauthorized) })

	ctx := browser(t)
	step(t, ctx, "the prompt", open("http://"+addr+"/ui/#/records"), visible(`#token-form`))
	screenshot(t, ctx, t.TempDir(), "token")
	step(t, ctx, "give the token",
		chromedp.SendKeys(chromedp.CSS(`#token-input`), d.token),
		click(`#token-form button`),
		visible(`#records tbody tr`))
	if rows := eval[int](t, ctx, `document.querySelectorAll('#records tbody tr').length`); rows != 1 {
		t.Errorf("%d rows after giving the token, want 1", rows)
	}
	if stored := eval[string](t, ctx, `JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`); strings.Contains(stored, d.token) {
		t.Errorf("the token was stored: %q", stored)
	}
}

// TestExplorerSearchVerifiesHits: the explorer of a log run with
// --index-url and --read-access authenticated queries a real cairn index
// serve on another origin (allowed by --cors-origin), sending the token the
// page asked for. Search and history verify every hit in the browser as
// cairn search does (format/search.CheckHit in WebAssembly); the history
// page shows the diff between consecutive versions exactly as cairn
// history prints it, hostile values as text. A row the index then
// misattributes (its database edited) is shown NOT verified, with why.
func TestExplorerSearchVerifiesHits(t *testing.T) {
	chromiumPath(t)
	indexAddr := testport.Addr(t)
	sc := newSearchCluster(t, "--index-url", "http://"+indexAddr+"/")
	base := time.Now().Add(-time.Minute).UnixMilli()
	doc := func(v map[string]any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	type version struct {
		who, body string
		subjects  []string
	}
	versions := []version{
		{"alice", doc(map[string]any{"actor": "alice", "action": "write", "resource": map[string]any{"id": "fw-policy", "rules": []int{1, 2}}}), nil},
		{"bob", doc(map[string]any{"actor": "bob", "action": "read", "resource": map[string]any{"id": "db"}}), nil},
		{"bob", doc(map[string]any{"actor": xssImg, "action": "write", "resource": map[string]any{"id": "fw-policy", "rules": []int{5, 2}},
			"note": xssScript, xssScript: xssURL}), nil},
		{"alice", doc(map[string]any{"actor": "alice", "action": "write", "resource": map[string]any{"id": "fw-policy", "rules": []int{5}}}), nil},
		{"alice", doc(map[string]any{"actor": "alice", "action": "approve", "resource": map[string]any{"id": "fw-policy", "rules": []int{5}}}), []string{"patient-4711"}},
	}
	var history []uint64 // the fw-policy versions' indexes
	for i, v := range versions {
		idx := sc.post(t, v.who, "application/json", v.body, base+int64(i)*500, v.subjects...)
		if i != 1 {
			history = append(history, idx)
		}
	}
	sc.waitSize(t, uint64(len(versions)), time.Minute)
	_, size, _ := sc.checkpoint(t)
	dbPath := t.TempDir() + "/index.db"
	x := startIndexAt(t, sc, "index", "sqlite:"+dbPath, indexAddr, "--cors-origin", "http://"+sc.httpAddr)
	x.waitIndexed(t, size)

	// What cairn history prints: the page must show the same diff.
	out, stderr, code := run(t, nil, "history", "--index", x.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--key", "resource=fw-policy")
	if code != 0 {
		t.Fatalf("cairn history: %d %s", code, stderr)
	}
	var cliDiffs []string
	for _, block := range strings.Split(strings.TrimSpace(out), "\n#")[0:] {
		var lines []string
		for _, l := range strings.Split(block, "\n")[1:] {
			lines = append(lines, strings.TrimPrefix(l, "    "))
		}
		cliDiffs = append(cliDiffs, strings.Join(lines, "\n"))
	}

	ui := "http://" + sc.httpAddr + "/ui/"
	ctx := browser(t)
	step(t, ctx, "the history page asks for the token", open(ui+"#/history"), visible(`#token-form`),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), sc.token(t, "reader")), click(`#token-form button`), visible(`#q-field`))
	step(t, ctx, "history of resource=fw-policy",
		chromedp.SetValue(chromedp.CSS(`#q-field`), "resource"),
		chromedp.SendKeys(chromedp.CSS(`#q-value`), "fw-policy"), click(`#search-form button`),
		visible(`#versions li`))
	rows := eval[[]string](t, ctx, `[...document.querySelectorAll('#hits tbody tr')].map(r => r.dataset.verified + ' ' + r.cells[0].textContent)`)
	var want []string
	for _, i := range history {
		want = append(want, fmt.Sprintf("true %d", i))
	}
	if strings.Join(rows, ",") != strings.Join(want, ",") {
		t.Errorf("history rows %v, want %v (every version, verified, in log order)", rows, want)
	}
	diffs := eval[[]string](t, ctx, `[...document.querySelectorAll('#versions li pre.diff')].map(p => p.textContent.trimEnd())`)
	if strings.Join(diffs, "\n#\n") != strings.Join(cliDiffs, "\n#\n") {
		t.Errorf("the page's diffs differ from cairn history's:\npage:\n%s\ncli:\n%s", strings.Join(diffs, "\n#\n"), strings.Join(cliDiffs, "\n#\n"))
	}
	if len(diffs) > 2 && !strings.Contains(diffs[1], "~ .resource.rules[0]: 1 → 5") {
		t.Errorf("the second version's diff does not show rules[0] changing: %q", diffs[1])
	}
	if ran := eval[bool](t, ctx, `window.__xss !== undefined || document.querySelectorAll('#main img, #main script').length > 0`); ran {
		t.Error("a record's value reached the page as markup")
	}
	if cell := text(t, ctx, `#hits tbody tr:nth-child(2) td:nth-child(5)`); !strings.Contains(cell, xssImg) {
		t.Errorf("the hostile field value is not shown as text: %q", cell)
	}
	screenshot(t, ctx, t.TempDir(), "history")

	eval[string](t, ctx, `location.hash = '#/search?principal=bob&go=1'`)
	step(t, ctx, "search principal=bob", visible(`#q-principal`))
	eventually(t, time.Minute, func() error {
		if v := eval[[]string](t, ctx, `[...document.querySelectorAll('#hits tbody tr')].map(r => r.dataset.verified)`); strings.Join(v, ",") != "true,true" {
			return fmt.Errorf("bob's hits verified %v, want two, both verified", v)
		}
		return nil
	})
	if res := text(t, ctx, `#search-results`); strings.HasSuffix(strings.TrimSpace(res), "null") {
		t.Errorf("the search results end in a stray %q", res)
	}
	screenshot(t, ctx, t.TempDir(), "search")

	// A page on another origin (localhost, not 127.0.0.1) is not in
	// --cors-origin: the browser refuses it the answers, the page says why.
	other := strings.Replace(ui, "127.0.0.1", "localhost", 1)
	step(t, ctx, "the explorer on an origin the index does not allow", open(other+"#/history"), visible(`#token-form`),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), sc.token(t, "reader")), click(`#token-form button`), visible(`main .error`))
	if msg := text(t, ctx, `main .error`); !strings.Contains(msg, "--cors-origin "+strings.TrimSuffix(other, "/ui/")) {
		t.Errorf("the page on another origin: %q", msg)
	}

	// The index lies: it files record 1 (resource db) under fw-policy, and
	// serves a changed leaf for the second version.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var leaf []byte
	if err := db.QueryRow(`SELECT leaf FROM records WHERE idx = ?`, history[1]).Scan(&leaf); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE field_keys SET k = ? WHERE idx = 1 AND k = ?`, []any{fieldKey("resource", "fw-policy"), fieldKey("resource", "db")}},
		{`UPDATE records SET leaf = ? WHERE idx = ?`, []any{[]byte(strings.Replace(string(leaf), `"action":"write"`, `"action":"wrote"`, 1)), history[1]}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	step(t, ctx, "reload: the token again", open(ui+"#/history?resource=fw-policy&go=1"), visible(`#token-form`),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), sc.token(t, "reader")), click(`#token-form button`), visible(`#versions li`))
	verified := eval[[]string](t, ctx, `[...document.querySelectorAll('#hits tbody tr')].map(r => r.dataset.verified)`)
	if strings.Join(verified, ",") != "true,false,false,true,true" {
		t.Errorf("after the index lied about records 1 and %d, verified %v, want those two false", history[1], verified)
	}
	if why := text(t, ctx, `#hits tbody tr:nth-child(2)`); !strings.Contains(why, `hit 1 does not match the query: field resource is "db"`) {
		t.Errorf("the record filed under the wrong key: %q", why)
	}
	if why := text(t, ctx, `#hits tbody tr:nth-child(3)`); !strings.Contains(why, fmt.Sprintf("is not at index %d", history[1])) {
		t.Errorf("the changed leaf: %q", why)
	}
	if li := text(t, ctx, `#versions li:nth-child(3)`); !strings.Contains(li, "left out of the diff") {
		t.Errorf("the changed version in the history: %q", li)
	}
}

// TestExplorerShowsErasedAndPrunedRecords: a record whose data subject was
// erased shows as erased (with when), records below the minimum index as
// pruned, in the list and on their page.
func TestExplorerShowsErasedAndPrunedRecords(t *testing.T) {
	chromiumPath(t)
	dir := t.TempDir()
	if _, stderr, code := run(t, nil, "keygen", "--name", "erase.test/log", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--out", dir+"/log.kek"); code != 0 {
		t.Fatal(stderr)
	}
	mustWrite(t, dir+"/retention.txt", []byte("keep 2s\ngrace 1h\nthen purge\n"))
	addr := testport.Addr(t)
	p := &proc{name: "log-erase", args: []string{"log", "serve", "--origin", "erase.test/log", "--key", dir + "/log.key",
		"--storage", "posix:" + dir + "/log", "--http", addr, "--grpc", testport.Addr(t), "--insecure-plaintext", "--kek-file", dir + "/log.kek",
		"--checkpoint-interval", "200ms", "--retention", dir + "/retention.txt", "--retention-interval", "500ms"}}
	p.start(t)
	t.Cleanup(func() { p.kill9() })
	p.waitServing(t, "http://"+addr+"/readyz")
	post := func(body string, h map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/add", strings.NewReader(body))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /add: %s %s", resp.Status, b)
		}
	}
	// One full bundle (256 records) to expire, then a record about alice.
	batch := strings.Repeat("x", 10)
	for i := range 256 {
		post(fmt.Sprintf("%s %d", batch, i), nil)
	}
	post(`{"user":"alice","event":"login"}`, map[string]string{"Content-Type": "application/json", "Cairn-Subject": "alice"})
	post("after alice", nil)
	resp, err := http.Post("http://"+addr+"/erase", "application/json", strings.NewReader(`{"subject":"alice","reason":"GDPR request 42"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /erase: %s %s", resp.Status, b)
	}
	eventually(t, time.Minute, func() error { return answers("http://"+addr+"/tile/entries/000", http.StatusGone) })

	ctx := browser(t)
	ui := "http://" + addr + "/ui/"
	step(t, ctx, "the erased record", open(ui+"#/record/256"), visible(`#envelope`))
	if env := text(t, ctx, `#envelope`); !strings.Contains(env, "erased") || !strings.Contains(env, "Erased at") {
		t.Errorf("the erased record's envelope: %q", env)
	}
	step(t, ctx, "a pruned record", open(ui+"#/record/5"), visible(`main .error`))
	if h1, msg := text(t, ctx, `main h1`), text(t, ctx, `main .error`); !strings.Contains(h1, "pruned") || !strings.Contains(msg, "minimum index 256") {
		t.Errorf("a pruned record's page: %q / %q", h1, msg)
	}
	step(t, ctx, "the list across the minimum index", open(ui+"#/records?before=258"), visible(`#records tbody tr`))
	states := eval[[]string](t, ctx, `[...document.querySelectorAll('#records tbody tr td:last-child')].map(td => td.textContent)`)
	if len(states) != 20 || states[0] != "plain" || states[1] != "erased" || states[2] != "pruned" || states[19] != "pruned" {
		t.Errorf("states of records 257 down to 238: %v", states)
	}
	screenshot(t, ctx, t.TempDir(), "pruned")
}
