package retention

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsTheDocumentedForms(t *testing.T) {
	for _, tc := range []struct {
		text string
		want Policy
	}{
		{"keep 2190d\nthen purge\n", Policy{Keep: 2190 * day, Action: Purge}},
		{"# PCI-DSS\n\nkeep 365d\ngrace 30d\nthen archive posix:/srv/a\n", Policy{Keep: 365 * day, Grace: 30 * day, Action: Archive, ArchiveTo: "posix:/srv/a"}},
		{"keep 90s\ngrace 1h30m\nthen archive s3://bucket/prefix/x", Policy{Keep: 90 * time.Second, Grace: 90 * time.Minute, Action: Archive, ArchiveTo: "s3://bucket/prefix/x"}},
		{"  then purge  \r\nkeep 1h", Policy{Keep: time.Hour, Action: Purge}},
		{"keep 1d\nthen archive s3://b", Policy{Keep: day, Action: Archive, ArchiveTo: "s3://b"}},
	} {
		got, err := Parse([]byte(tc.text))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.text, err)
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.text, got, tc.want)
		}
		again, err := Parse([]byte(got.String()))
		if err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
		}
	}
}

func TestParseRefusesMalformedPolicies(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "no keep line"},
		{"keep 1d", "no then line"},
		{"then purge", "no keep line"},
		{"keep 1d\nkeep 2d\nthen purge", "keep given twice"},
		{"keep 0s\nthen purge", "keep must be positive"},
		{"keep -1h\nthen purge", "negative"},
		{"keep 1.5d\nthen purge", "whole number of days"},
		{"keep d\nthen purge", "whole number of days"},
		{"keep 99999999999999d\nthen purge", "too long"},
		{"keep 1y\nthen purge", "Go syntax"},
		{"keep\nthen purge", "one duration"},
		{"keep 1d\nthen delete", "then purge"},
		{"keep 1d\nthen archive", "then purge"},
		{"keep 1d\nthen archive ftp://x", "posix:DIR or s3://"},
		{"keep 1d\nthen archive posix:", "needs a directory"},
		{"keep 1d\nthen archive s3:///p", "needs a bucket"},
		{"keep 1d\nthen purge\nthen purge", "then given twice"},
		{"keep 1d\nretain 2d\nthen purge", `unknown directive "retain"`},
		{"keep 1d\ngrace 1d\ngrace 2d\nthen purge", "grace given twice"},
		{strings.Repeat("#", MaxBytes+1), "limit"},
	} {
		_, err := Parse([]byte(tc.text))
		if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an ErrMalformed naming %q", tc.text, err, tc.want)
		}
	}
}

func TestErrorsNameTheLine(t *testing.T) {
	_, err := Parse([]byte("keep 1d\n\nfoo bar\nthen purge"))
	if err == nil || !strings.Contains(err.Error(), `line 3 "foo bar"`) {
		t.Fatalf("error %v does not name line 3", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"keep 2190d\ngrace 30d\nthen archive posix:/a\n", "keep 90s\nthen purge", "keep 1d\nthen archive s3://b/p", "# c\nkeep 1h\nthen purge\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.Keep <= 0 || p.Grace < 0 || (p.Action != Purge && p.Action != Archive) {
			t.Fatalf("accepted an invalid policy %+v", p)
		}
		again, err := Parse([]byte(p.String()))
		if err != nil || again != p {
			t.Fatalf("round trip %q: %+v, %v", p.String(), again, err)
		}
	})
}
