package addentries

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"
)

func leaves(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "entry %d", i))
	}
	return out
}

// perfectFrom reads perfect node hashes out of a full leaf list.
func perfectFrom(l [][]byte) func(level, index uint64) ([]byte, error) {
	return func(level, index uint64) ([]byte, error) {
		w := uint64(1) << level
		return mth(l[index*w : (index+1)*w]), nil
	}
}

func TestSubtreeProofFromZeroIsTheRFC6962ConsistencyProof(t *testing.T) {
	l := leaves(1000)
	for _, c := range []struct{ end, size uint64 }{{1, 2}, {3, 4}, {5, 8}, {256, 1000}, {300, 777}, {999, 1000}, {7, 7}} {
		got, err := Proof(0, c.end, c.size, func(r Range) ([]byte, error) { return RangeHash(r, perfectFrom(l)) })
		if err != nil {
			t.Fatal(err)
		}
		root := mth(l[:c.size])
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, c.end, c.size, got, mth(l[:c.end]), root); err != nil {
			t.Errorf("[0, %d) in %d: merkle rejects the proof: %v", c.end, c.size, err)
		}
		// And x/mod/sumdb/tlog agrees on the roots.
		th, err := tlog.TreeHash(int64(c.size), hashReader(l))
		if err != nil || !bytes.Equal(th[:], root) {
			t.Fatalf("x/mod tree hash %x, ours %x (%v)", th, root, err)
		}
	}
}

type hashReader [][]byte

func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		w := 1 << level
		copy(out[i][:], mth(h[n*int64(w):(n+1)*int64(w)]))
	}
	return out, nil
}

func TestVerifySubtreeAcceptsEveryPackageAndRejectsTampering(t *testing.T) {
	l := leaves(1300)
	for _, size := range []uint64{1, 255, 256, 257, 511, 512, 1000, 1300} {
		root := mth(l[:size])
		for sp := range Spans(0, size) {
			p, err := Proof(sp.SubtreeStart, sp.End, size, func(r Range) ([]byte, error) { return RangeHash(r, perfectFrom(l)) })
			if err != nil {
				t.Fatal(err)
			}
			sub := l[sp.SubtreeStart:sp.End]
			if err := VerifySubtree(sp.SubtreeStart, sub, size, p, root); err != nil {
				t.Fatalf("size %d package %+v: %v", size, sp, err)
			}
			bad := append([][]byte{}, sub...)
			bad[len(bad)-1] = sha256.New().Sum(nil)
			if err := VerifySubtree(sp.SubtreeStart, bad, size, p, root); !errors.Is(err, ErrProof) {
				t.Fatalf("size %d package %+v: a changed entry verified (%v)", size, sp, err)
			}
			if len(p) > 0 {
				p[0] = append([]byte{}, p[0]...)
				p[0][0] ^= 1
				if err := VerifySubtree(sp.SubtreeStart, sub, size, p, root); !errors.Is(err, ErrProof) {
					t.Fatalf("size %d package %+v: a flipped proof byte verified (%v)", size, sp, err)
				}
			}
		}
	}
}

func TestSpansAreTheCanonicalSequence(t *testing.T) {
	got := slices.Collect(Spans(300, 1000))
	want := []Span{{256, 300, 512}, {512, 512, 768}, {768, 768, 1000}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Spans(300, 1000) = %v, want %v", got, want)
	}
	if slices.Collect(Spans(5, 5)) != nil {
		t.Fatal("an empty upload has packages")
	}
}

func TestBodyRoundTrip(t *testing.T) {
	h := Header{Origin: "example.com/log", UploadStart: 3, UploadEnd: 260, Ticket: []byte("t")}
	body := h.Marshal()
	body, _ = AppendPackage(body, [][]byte{[]byte("a"), {}}, [][]byte{make([]byte, 32)})
	r := bufio.NewReader(bytes.NewReader(body))
	got, err := ReadHeader(r)
	if err != nil || got.Origin != h.Origin || got.UploadStart != 3 || got.UploadEnd != 260 || string(got.Ticket) != "t" {
		t.Fatalf("ReadHeader = %+v, %v", got, err)
	}
	p, err := ReadPackage(r, Span{0, 3, 5})
	if err != nil || len(p.Entries) != 2 || string(p.Entries[0]) != "a" || len(p.Proof) != 1 {
		t.Fatalf("ReadPackage = %+v, %v", p, err)
	}
	if _, err := ReadPackage(r, Span{256, 256, 260}); err != io.EOF {
		t.Fatalf("at the end of the body: %v, want io.EOF", err)
	}
}

func TestParserRejectsMalformedBodies(t *testing.T) {
	good := Header{Origin: "o", UploadStart: 0, UploadEnd: 1}.Marshal()
	for name, body := range map[string][]byte{
		"empty":           {},
		"short origin":    {0, 5, 'a'},
		"empty origin":    {0, 0},
		"no sizes":        {0, 1, 'o', 0, 0},
		"start after end": Header{Origin: "o", UploadStart: 2, UploadEnd: 1}.Marshal(),
		"no ticket":       good[:len(good)-2],
	} {
		if _, err := ReadHeader(bytes.NewReader(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for name, pkg := range map[string][]byte{
		"cut entry":      {0, 5, 'a'},
		"no num_hashes":  {0, 1, 'a'},
		"64 hashes":      {0, 1, 'a', 64},
		"cut proof hash": {0, 1, 'a', 1, 1, 2},
	} {
		if _, err := ReadPackage(bufio.NewReader(bytes.NewReader(pkg)), Span{0, 0, 1}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestMirrorInfoRoundTrip(t *testing.T) {
	m := MirrorInfo{Size: 10, Next: 7, Ticket: []byte{1, 2}}
	got, err := ParseMirrorInfo(m.Marshal())
	if err != nil || got.Size != 10 || got.Next != 7 || !bytes.Equal(got.Ticket, m.Ticket) {
		t.Fatalf("%+v %v", got, err)
	}
	if string(MirrorInfo{Size: 5, Next: 5}.Marshal()) != "5\n5\n\n" {
		t.Fatal("empty ticket is not an empty line")
	}
	for _, bad := range []string{"", "1\n2\n", "01\n2\n\n", "1\n2\n!!\n", "1\n2\n\n\n"} {
		if _, err := ParseMirrorInfo([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzAddEntriesBody feeds arbitrary bytes to the body parser as the mirror
// does: a header, then the canonical packages; it must never panic, and a
// body that parses must re-encode to the bytes it came from.
func FuzzAddEntriesBody(f *testing.F) {
	h := Header{Origin: "example.com/log", UploadStart: 254, UploadEnd: 258}
	body := h.Marshal()
	body, _ = AppendPackage(body, [][]byte{[]byte("x"), []byte("y")}, [][]byte{make([]byte, 32)})
	body, _ = AppendPackage(body, [][]byte{[]byte("z"), {}}, nil)
	f.Add(body)
	f.Add(h.Marshal())
	f.Add([]byte{0, 1, 'o'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		h, err := ReadHeader(r)
		if err != nil {
			return
		}
		out := h.Marshal()
		i := 0
		for sp := range Spans(h.UploadStart, h.UploadEnd) {
			if i++; i > 40 {
				break
			}
			p, err := ReadPackage(r, sp)
			if err != nil {
				return
			}
			if out, err = AppendPackage(out, p.Entries, p.Proof); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.HasPrefix(b, out) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}
