package log

import (
	"bytes"
	"fmt"
	neturl "net/url"
	"strings"

	"github.com/transparency-dev/tessera"
)

// witnessGroup builds Tessera's witness group from the log's tlog-policy.
//
// A witness that cosigns with several keys (Ed25519 and ML-DSA-44, see
// docs/witness.md) is named by one witness line per key, all with the
// witness's URL, and a hybrid policy groups those lines with "all". Tessera
// v1.0.4 keys the witnesses it calls by URL and keeps one key per URL, so
// the second key's cosignature would be dropped and a hybrid quorum never
// met. Each repeated URL is therefore given a query naming its line
// (https://w1.example?cosigner=w1-pq, so POST
// https://w1.example/add-checkpoint?cosigner=w1-pq): Tessera then calls the
// witness once per key and keeps that key's line from each answer. Witnesses
// route on the path and ignore the query. (A fragment would not be sent at
// all, but Tessera's policy parser reads '#' as a comment.)
func witnessGroup(policy []byte) (tessera.WitnessGroup, error) {
	return tessera.NewWitnessGroupFromPolicy(distinctWitnessURLs(policy))
}

// distinctWitnessURLs rewrites witness lines whose URL an earlier witness
// line already used, adding "?cosigner=<name>" ("&cosigner=" if it has a
// query). Other lines are kept as they are.
func distinctWitnessURLs(policy []byte) []byte {
	seen := map[string]bool{}
	lines := bytes.Split(policy, []byte("\n"))
	for i, line := range lines {
		body, _, _ := strings.Cut(string(line), "#")
		f := strings.Fields(body)
		if len(f) != 4 || f[0] != "witness" {
			continue
		}
		url := f[3]
		if !seen[url] {
			seen[url] = true
			continue
		}
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		lines[i] = []byte(fmt.Sprintf("witness %s %s %s%scosigner=%s", f[1], f[2], url, sep, neturl.QueryEscape(f[1])))
	}
	return bytes.Join(lines, []byte("\n"))
}
