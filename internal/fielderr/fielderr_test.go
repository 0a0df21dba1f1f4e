package fielderr

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestErrorNamesTheFieldAndKeepsTheReason(t *testing.T) {
	err := fmt.Errorf("opening the log: %w", Errorf("Config.AWS.S3Bucket", "reading: %w", fs.ErrNotExist))
	if got, want := err.Error(), "opening the log: Config.AWS.S3Bucket: reading: file does not exist"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	fe, ok := As(err)
	if !ok || fe.Field != "Config.AWS.S3Bucket" {
		t.Fatalf("As: %v, %v", fe, ok)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("the reason does not unwrap")
	}
	if _, ok := As(errors.New("plain")); ok {
		t.Error("As found a field in a plain error")
	}
}
