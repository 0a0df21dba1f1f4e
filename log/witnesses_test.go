package log

import (
	"slices"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
)

// TestHybridPolicyCallsTheWitnessOncePerKey: a hybrid policy names each
// witness's Ed25519 and ML-DSA-44 keys with the same URL; Tessera must get
// one endpoint per key (else it keeps one key per URL and the hybrid quorum
// is never met), each posting to the witness's add-checkpoint.
func TestHybridPolicyCallsTheWitnessOncePerKey(t *testing.T) {
	var policy strings.Builder
	policy.WriteString("log example.test/log+f1bd5c65+AfWxAPRYEuwL0N11FKlCp0vGQr+Pvx9x6xdtY3wQepmM\n")
	var groups []string
	pqKeys := map[string]cosignature.Key{} // line name → key
	for _, w := range []string{"w1", "w2", "w3"} {
		_, ed, err := cosignature.GenerateKey(w+".example", cosignature.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		_, pq, err := cosignature.GenerateKey(w+".example", cosignature.MLDSA44)
		if err != nil {
			t.Fatal(err)
		}
		if pqKeys[w+"-pq"], err = cosignature.ParseVKey(pq); err != nil {
			t.Fatal(err)
		}
		url := "https://127.0.0.1:7001/" + w
		policy.WriteString("witness " + w + "-ed " + ed + " " + url + "   # Ed25519\n")
		policy.WriteString("witness " + w + "-pq " + pq + " " + url + "\n")
		policy.WriteString("group " + w + " all " + w + "-ed " + w + "-pq\n")
		groups = append(groups, w)
	}
	policy.WriteString("group hybrid 2 " + strings.Join(groups, " ") + "\nquorum hybrid\n")
	g, err := witnessGroup([]byte(policy.String()))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for u := range g.Endpoints() {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	want := []string{
		"https://127.0.0.1:7001/w1/add-checkpoint", "https://127.0.0.1:7001/w1/add-checkpoint?cosigner=w1-pq",
		"https://127.0.0.1:7001/w2/add-checkpoint", "https://127.0.0.1:7001/w2/add-checkpoint?cosigner=w2-pq",
		"https://127.0.0.1:7001/w3/add-checkpoint", "https://127.0.0.1:7001/w3/add-checkpoint?cosigner=w3-pq",
	}
	if !slices.Equal(urls, want) {
		t.Fatalf("endpoints:\n%s\nwant:\n%s", strings.Join(urls, "\n"), strings.Join(want, "\n"))
	}
	// Each ?cosigner= endpoint checks answers with that line's ML-DSA-44 key.
	for u, v := range g.Endpoints() {
		_, name, ok := strings.Cut(u, "cosigner=")
		if ok && v.KeyHash() != pqKeys[name].Verifier.KeyHash() {
			t.Errorf("%s verifies with key %s+%08x, not %s's", u, v.Name(), v.KeyHash(), name)
		}
	}
}
