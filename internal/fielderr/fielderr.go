// Package fielderr names the configuration field a library refused. Libraries
// (log, witness, client) speak of their own Config fields; the command line
// translates a field into the flag that sets it, so code that embeds a library
// never reads about flags it never saw.
package fielderr

import (
	"errors"
	"fmt"
)

// Error is a configuration error about one field, such as "Config.MySQLDSN".
type Error struct {
	// Field is the Go path of the field: "Config.MySQLDSN", "Config.AWS.S3Bucket".
	Field string
	// Err says what is wrong with its value.
	Err error
}

// Error prints "Config.Field: reason".
func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error for field with err as its reason.
func New(field string, err error) error { return &Error{Field: field, Err: err} }

// Errorf returns an *Error for field with a formatted reason (%w allowed).
func Errorf(field, format string, args ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, args...)}
}

// As returns the first *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}
