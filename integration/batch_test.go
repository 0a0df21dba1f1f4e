package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cairn submit --batch appends JSON lines in order; a batch with one bad
// line exits 2 naming it and appends nothing; the log then audits clean.
func TestSubmitBatchAppendsInOrderAndRefusesABadLineWhole(t *testing.T) {
	c := newCluster(t)
	var in strings.Builder
	for i := range 50 {
		fmt.Fprintf(&in, "{\"n\":%d}\n", i)
	}
	out, stderr, code := run(t, []byte(in.String()), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
		"--content-type", "application/json", "--batch", "-")
	if code != 0 {
		t.Fatalf("submit --batch: exit %d: %s %s", code, out, stderr)
	}
	lines := strings.Fields(out)
	if len(lines) != 50 {
		t.Fatalf("%d indices for 50 records: %q", len(lines), out)
	}
	for i, s := range lines {
		if n, err := strconv.ParseUint(s, 10, 64); err != nil || n != uint64(i) {
			t.Fatalf("record %d got index %q, want %d", i, s, i)
		}
	}
	c.waitSize(t, 50, 60*time.Second)

	bad := "{\"n\":100}\n{\"n\":101}\n{not json\n"
	if out, stderr, code := run(t, []byte(bad), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
		"--content-type", "application/json", "--batch", "-"); code != 2 || !strings.Contains(stderr, "record 2") {
		t.Fatalf("a bad line: exit %d, %s %s; want 2 naming record 2", code, out, stderr)
	}
	// Nothing of the refused batch: the next record gets index 50.
	if n, err := c.add(t, "after the refused batch"); err != nil || n != 50 {
		t.Fatalf("next record: index %d (%v), want 50", n, err)
	}
	c.waitSize(t, 51, 60*time.Second)
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 {
		t.Fatalf("audit: %d %s %s", code, out, stderr)
	}
}
