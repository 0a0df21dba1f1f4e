package main

import (
	"regexp"
	"slices"
	"strings"

	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// fieldAnnotation is the pflag annotation listing the library Config fields
// a flag sets ("Config.MySQLDSN", "SubmitterOptions.Token").
const fieldAnnotation = "cairn-field"

// annotateField records that flag name sets the library's Config field path.
// A flag may set several fields (one per library it configures).
func annotateField(fs *pflag.FlagSet, name, field string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("annotateField: no flag --" + name) // a typo: a programming error
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	if !slices.Contains(f.Annotations[fieldAnnotation], field) {
		f.Annotations[fieldAnnotation] = append(f.Annotations[fieldAnnotation], field)
	}
}

// fieldPath matches a library field path in an error's text.
var fieldPath = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*(\.[A-Z][A-Za-z0-9]*)+`)

// flagError rewrites a *fielderr.Error in err into "--flag: reason" using
// cmd's annotations; field paths named in the reason become their flags too.
// An error without a field, or whose field no flag of cmd sets, is returned
// as is. Context around the field error is kept, and the rewritten error
// still unwraps to err.
func flagError(cmd *cobra.Command, err error) error {
	fe, ok := fielderr.As(err)
	if !ok || cmd == nil {
		return err
	}
	flags := map[string]string{}
	collect := func(f *pflag.Flag) {
		for _, field := range f.Annotations[fieldAnnotation] {
			if _, seen := flags[field]; !seen {
				flags[field] = "--" + f.Name
			}
		}
	}
	cmd.Flags().VisitAll(collect)
	cmd.InheritedFlags().VisitAll(collect)
	flag, ok := flags[fe.Field]
	if !ok {
		return err
	}
	reason := fieldPath.ReplaceAllStringFunc(fe.Err.Error(), func(field string) string {
		if f, ok := flags[field]; ok {
			return f
		}
		return field
	})
	// Keep any context around the field error: "opening the log: --log: …".
	msg := strings.Replace(err.Error(), fe.Error(), flag+": "+reason, 1)
	return &flagErr{msg: msg, err: err}
}

// flagErr is a field error told in the CLI's words; it still unwraps to the
// library's error.
type flagErr struct {
	msg string
	err error
}

func (e *flagErr) Error() string { return e.msg }
func (e *flagErr) Unwrap() error { return e.err }
