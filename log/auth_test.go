package log

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/devpki"
	"github.com/cairnlog/cairn/log/access"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// secureLog is a log with TLS, mTLS and an access file.
type secureLog struct {
	*testLog
	ca         *devpki.CA
	accessPath string
	tokens     map[string]string // principal → token
	pool       *x509.CertPool
}

func newSecureLog(t *testing.T, mutate func(*Config)) *secureLog {
	t.Helper()
	dir := t.TempDir()
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Loopback("log")
	if err := srv.WriteFiles(dir+"/server.crt", dir+"/server.key"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/ca.crt", ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	af := &access.File{}
	tokens := map[string]string{}
	for name, roles := range map[string][]access.Role{
		"writer":   {access.RoleAppend},
		"reader":   {access.RoleRead},
		"auditor":  {access.RoleRead, access.RoleAppend},
		"operator": {access.RoleAdmin},
	} {
		tok, err := af.AddToken(name, roles)
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
	}
	if err := af.AddCert("spiffe://example.test/billing", []access.Role{access.RoleAppend}); err != nil {
		t.Fatal(err)
	}
	accessPath := filepath.Join(dir, "access.txt")
	if err := af.Save(accessPath); err != nil {
		t.Fatal(err)
	}
	skey, vkey := newKey(t, testOrigin)
	cfg := testConfig(filepath.Join(dir, "log"), skey)
	cfg.InsecurePlaintext = false
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = dir+"/server.crt", dir+"/server.key", dir+"/ca.crt"
	cfg.AccessFile = accessPath
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tl := &testLog{Log: l, cancel: cancel, done: make(chan error, 1), vkey: vkey, base: "https://" + l.HTTPAddr()}
	go func() { tl.done <- l.Run(ctx) }()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tl.conn = dial(t, l.GRPCAddr(), pool, nil)
	tl.api = cairnv1.NewLogClient(tl.conn)
	t.Cleanup(func() { tl.stop(t) })
	return &secureLog{testLog: tl, ca: ca, accessPath: accessPath, tokens: tokens, pool: pool}
}

func dial(t *testing.T, addr string, pool *x509.CertPool, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{RootCAs: pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func (s *secureLog) httpClient(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: s.pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
}

func (s *secureLog) do(t *testing.T, c *http.Client, method, path, token string, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func clientCert(t *testing.T, ca *devpki.CA, o devpki.Options) *tls.Certificate {
	t.Helper()
	o.Client = true
	is, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestAppendsNeedAnIdentityWithTheAppendRole(t *testing.T) {
	s := newSecureLog(t, nil)
	ctx := context.Background()
	req := &cairnv1.AppendRequest{Payload: []byte("x")}
	for _, c := range []struct {
		name  string
		ctx   context.Context
		code  codes.Code
		token string
		http  int
	}{
		{"no identity", ctx, codes.Unauthenticated, "", http.StatusUnauthorized},
		{"unknown token", bearer(ctx, "cairn_0011223344556677_bm9wZQ"), codes.Unauthenticated, "cairn_0011223344556677_bm9wZQ", http.StatusUnauthorized},
		{"tampered token", bearer(ctx, s.tokens["writer"]+"x"), codes.Unauthenticated, s.tokens["writer"] + "x", http.StatusUnauthorized},
		{"read-only token", bearer(ctx, s.tokens["reader"]), codes.PermissionDenied, s.tokens["reader"], http.StatusForbidden},
	} {
		if _, err := s.api.Append(c.ctx, req); status.Code(err) != c.code {
			t.Errorf("gRPC %s: %v, want %v", c.name, err, c.code)
		}
		stream, err := s.api.AppendStream(c.ctx)
		if err == nil {
			_ = stream.Send(req)
			_, err = stream.Recv()
		}
		if status.Code(err) != c.code {
			t.Errorf("gRPC stream %s: %v, want %v", c.name, err, c.code)
		}
		code, hdr, body := s.do(t, s.httpClient(nil), http.MethodPost, "/add", c.token, "x")
		if code != c.http || body == "" {
			t.Errorf("HTTP %s: %d %q, want %d", c.name, code, body, c.http)
		}
		if code == http.StatusUnauthorized && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("HTTP %s: 401 without WWW-Authenticate", c.name)
		}
	}
	// The writer's record is the first: nothing above was sequenced, and the
	// submitter is the authenticated principal, whatever the request says.
	r, err := s.api.Append(bearer(ctx, s.tokens["writer"]), &cairnv1.AppendRequest{Payload: []byte("signed in"), IdempotencyKey: "anonymous"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 0 {
		t.Fatalf("first authorized record got index %d: a refused request was sequenced", r.Index)
	}
	rec, _ := record.Decode(r.Leaf)
	if rec.Submitter != "writer" {
		t.Fatalf("submitter %q, want the token's principal %q", rec.Submitter, "writer")
	}
	code, _, body := s.do(t, s.httpClient(nil), http.MethodPost, "/add", s.tokens["writer"], "y")
	if code != http.StatusOK || strings.TrimSpace(body) != "1" {
		t.Fatalf("HTTP append with a valid token: %d %q", code, body)
	}
}

func TestRevokedTokenIsRefusedAfterReload(t *testing.T) {
	s := newSecureLog(t, nil)
	ctx := bearer(context.Background(), s.tokens["writer"])
	if _, err := s.api.Append(ctx, &cairnv1.AppendRequest{Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	f, err := access.Load(s.accessPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Revoke("writer"); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(s.accessPath); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAccess(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.api.Append(ctx, &cairnv1.AppendRequest{Payload: []byte("after")}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want Unauthenticated", err)
	}
	// A broken access file on reload keeps the one in force.
	if err := os.WriteFile(s.accessPath, []byte("token broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAccess(); err == nil {
		t.Fatal("reloading a malformed access file succeeded")
	}
	if _, err := s.api.Append(bearer(context.Background(), s.tokens["auditor"]), &cairnv1.AppendRequest{Payload: []byte("still")}); err != nil {
		t.Fatalf("after a failed reload the previous access file must stay in force: %v", err)
	}
}

// An open AppendStream checks its caller once per access file in force
// (#19), so a token revoked while the stream is open stops it at the next
// reload, as a check per record did: records before the reload are
// appended, records after it are refused one by one and none is sequenced;
// the stream's other principal is untouched.
func TestRevokedTokenStopsAnOpenStreamAtTheNextReload(t *testing.T) {
	s := newSecureLog(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(token string) cairnv1.Log_AppendStreamClient {
		st, err := s.api.AppendStream(bearer(ctx, token))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	send := func(st cairnv1.Log_AppendStreamClient, payload string) *cairnv1.AppendResponse {
		t.Helper()
		if err := st.Send(&cairnv1.AppendRequest{Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	writer, auditor := open(s.tokens["writer"]), open(s.tokens["auditor"])
	for i := range 3 {
		if r := send(writer, fmt.Sprintf("before %d", i)); r.ErrorCode != 0 {
			t.Fatalf("record %d before the revocation: %s", i, r.ErrorMessage)
		}
	}
	if r := send(auditor, "auditor before"); r.ErrorCode != 0 {
		t.Fatal(r.ErrorMessage)
	}
	f, err := access.Load(s.accessPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Revoke("writer"); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(s.accessPath); err != nil {
		t.Fatal(err)
	}
	// Saved but not reloaded: the file in force still has the token.
	if r := send(writer, "saved, not reloaded"); r.ErrorCode != 0 {
		t.Fatalf("before the reload: %s", r.ErrorMessage)
	}
	if err := s.ReloadAccess(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := send(writer, fmt.Sprintf("after %d", i))
		if codes.Code(r.ErrorCode) != codes.Unauthenticated {
			t.Fatalf("record %d after the reload: code %v %q index %d, want Unauthenticated", i, codes.Code(r.ErrorCode), r.ErrorMessage, r.Index)
		}
	}
	r := send(auditor, "auditor after")
	if r.ErrorCode != 0 {
		t.Fatalf("the other principal's stream after the reload: %s", r.ErrorMessage)
	}
	// Four of the writer's records and two of the auditor's: none refused
	// was sequenced.
	if r.Index != 5 {
		t.Fatalf("the auditor's last record got index %d, want 5", r.Index)
	}
}

func TestClientCertificates(t *testing.T) {
	s := newSecureLog(t, nil)
	ctx := context.Background()
	req := &cairnv1.AppendRequest{Payload: []byte("from billing")}

	good := clientCert(t, s.ca, devpki.Options{CommonName: "ignored", URIs: []string{"spiffe://example.test/billing"}})
	r, err := cairnv1.NewLogClient(dial(t, s.GRPCAddr(), s.pool, good)).Append(ctx, req)
	if err != nil {
		t.Fatalf("valid client certificate: %v", err)
	}
	if rec, _ := record.Decode(r.Leaf); rec.Submitter != "spiffe://example.test/billing" {
		t.Fatalf("submitter %q, want the certificate's URI SAN", rec.Submitter)
	}
	if code, _, body := s.do(t, s.httpClient(good), http.MethodPost, "/add", "", "over https"); code != http.StatusOK {
		t.Fatalf("HTTP with a valid client certificate: %d %s", code, body)
	}

	unknown := clientCert(t, s.ca, devpki.Options{CommonName: "intruder"})
	if _, err := cairnv1.NewLogClient(dial(t, s.GRPCAddr(), s.pool, unknown)).Append(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("certificate not in the access file: %v, want Unauthenticated", err)
	}

	expired := clientCert(t, s.ca, devpki.Options{URIs: []string{"spiffe://example.test/billing"}, NotAfter: time.Now().Add(-time.Minute)})
	otherCA, _ := devpki.NewCA("someone else")
	foreign := clientCert(t, otherCA, devpki.Options{URIs: []string{"spiffe://example.test/billing"}})
	for name, cert := range map[string]*tls.Certificate{"expired": expired, "wrong CA": foreign} {
		if _, err := cairnv1.NewLogClient(dial(t, s.GRPCAddr(), s.pool, cert)).Append(ctx, req); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC with an %s certificate: %v, want a failed handshake (Unavailable) or Unauthenticated", name, err)
		}
		// Refused either in the handshake or, where the client withholds a
		// certificate the server's CA list does not name, as unauthenticated.
		req, _ := http.NewRequest(http.MethodPost, s.base+"/add", strings.NewReader("x"))
		if resp, err := s.httpClient(cert).Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("HTTP with an %s certificate: %s, want a TLS handshake failure or 401", name, resp.Status)
			}
		}
	}
	// Exactly the two accepted records were sequenced.
	r, err = s.api.Append(bearer(ctx, s.tokens["writer"]), &cairnv1.AppendRequest{Payload: []byte("last")})
	if err != nil || r.Index != 2 {
		t.Fatalf("next index %d (%v), want 2", r.GetIndex(), err)
	}
}

func TestPlaintextClientCannotTalkToATLSLog(t *testing.T) {
	s := newSecureLog(t, nil)
	resp, err := http.Post("http://"+s.HTTPAddr()+"/add", "", strings.NewReader("x"))
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("a plaintext request was accepted by a TLS listener")
		}
	}
}

func TestAuthenticatedReadAccessKeepsConsistencyPublic(t *testing.T) {
	s := newSecureLog(t, func(c *Config) { c.ReadAccess = ReadAuthenticated })
	ctx := context.Background()
	for i := range 3 {
		if _, err := s.api.Append(bearer(ctx, s.tokens["writer"]), &cairnv1.AppendRequest{Payload: fmt.Appendf(nil, "secret %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	c := s.httpClient(nil)
	eventually(t, 30*time.Second, func() error {
		code, _, body := s.do(t, c, http.MethodGet, "/checkpoint", "", "")
		if code != http.StatusOK {
			return fmt.Errorf("GET /checkpoint: %d %s", code, body)
		}
		v, err := note.NewVerifier(s.vkey)
		if err != nil {
			t.Fatal(err)
		}
		n, err := note.Open([]byte(body), note.VerifierList(v))
		if err != nil {
			t.Fatalf("GET /checkpoint does not verify: %v\n%s", err, body)
		}
		cp, err := checkpoint.Parse([]byte(n.Text))
		if err != nil {
			t.Fatalf("GET /checkpoint: %v\n%s", err, body)
		}
		if cp.Size < 3 {
			return fmt.Errorf("checkpoint size %d, want 3", cp.Size)
		}
		return nil
	})
	for _, p := range []struct {
		path, token string
		want        int
	}{
		{"/checkpoint", "", http.StatusOK},
		{"/tile/0/000.p/3", "", http.StatusOK},
		{"/tile/entries/000.p/3", "", http.StatusUnauthorized},
		{"/tile/entries/000.p/3", s.tokens["writer"], http.StatusForbidden},
		{"/tile/entries/000.p/3", s.tokens["reader"], http.StatusOK},
	} {
		if code, _, body := s.do(t, c, http.MethodGet, p.path, p.token, ""); code != p.want {
			t.Errorf("GET %s (token %v): %d %q, want %d", p.path, p.token != "", code, body, p.want)
		}
	}
	if _, err := s.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 0, Count: 1}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetEntries without a token: %v", err)
	}
	if _, err := s.api.GetReceipt(bearer(ctx, s.tokens["writer"]), &cairnv1.GetReceiptRequest{Index: 0}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetReceipt with an append-only token: %v", err)
	}
	if _, err := s.api.GetReceipt(bearer(ctx, s.tokens["reader"]), &cairnv1.GetReceiptRequest{Index: 0}); err != nil {
		t.Errorf("GetReceipt with a read token: %v", err)
	}
	if _, err := s.api.GetConsistencyProof(ctx, &cairnv1.GetConsistencyProofRequest{FromSize: 1, ToSize: 3}); err != nil {
		t.Errorf("consistency proofs must stay public: %v", err)
	}
	if _, err := s.api.GetInclusionProof(ctx, &cairnv1.GetInclusionProofRequest{Index: 1, TreeSize: 3}); err != nil {
		t.Errorf("inclusion proofs must stay public: %v", err)
	}
}

func TestRateLimitEngagesAndReleases(t *testing.T) {
	// One record every 10 s beyond a burst of 5: the eight appends below,
	// however slow a loaded machine makes them, spend the burst long before
	// a token comes back.
	s := newSecureLog(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.1, 5 })
	ctx := bearer(context.Background(), s.tokens["writer"])
	limited := 0
	for i := range 8 {
		_, err := s.api.Append(ctx, &cairnv1.AppendRequest{Payload: fmt.Appendf(nil, "r%d", i)})
		if status.Code(err) == codes.ResourceExhausted {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Fatal("8 appends at once with a burst of 5 were never limited")
	}
	code, hdr, _ := s.do(t, s.httpClient(nil), http.MethodPost, "/add", s.tokens["writer"], "over")
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("HTTP over the limit: %d, Retry-After %q; want 429 with Retry-After", code, hdr.Get("Retry-After"))
	}
	// Another principal has its own budget.
	if _, err := s.api.Append(bearer(context.Background(), s.tokens["auditor"]), &cairnv1.AppendRequest{Payload: []byte("other")}); err != nil {
		t.Errorf("another principal was limited: %v", err)
	}
	// The limit releases.
	eventually(t, 30*time.Second, func() error {
		_, err := s.api.Append(ctx, &cairnv1.AppendRequest{Payload: []byte("later")})
		if err != nil && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("limit did not release: %v", err)
		}
		return err
	})
}
