package log

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cairnlog/cairn/log/access"
	"google.golang.org/grpc/metadata"
)

// BenchmarkStreamCallerCheck is the check of an AppendStream's caller per
// record with an access file: identifying the token every time (writer,
// what streams did before #19's fifth round) against once per access file in
// force (streamWriter).
func BenchmarkStreamCallerCheck(b *testing.B) {
	af := &access.File{}
	tok, err := af.AddToken("writer", []access.Role{access.RoleAppend})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "access.txt")
	if err := af.Save(path); err != nil {
		b.Fatal(err)
	}
	g, err := newGuard(Config{AccessFile: path}, newMetrics())
	if err != nil {
		b.Fatal(err)
	}
	s := &grpcServer{l: &Log{guard: g}}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	b.Run("identify-per-record", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.writer(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("per-access-file", func(b *testing.B) {
		var c streamPrincipal
		for b.Loop() {
			if _, err := s.streamWriter(ctx, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
