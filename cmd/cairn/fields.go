package main

import (
	"regexp"

	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// fieldAnnotation is the pflag annotation that names the library Config
// field a flag sets.
const fieldAnnotation = "cairn-field"

// annotateField records that flag name sets the library's Config field path.
func annotateField(fs *pflag.FlagSet, name, field string) {
	if err := fs.SetAnnotation(name, fieldAnnotation, []string{field}); err != nil {
		panic(err) // a typo in a flag name: a programming error
	}
}

// configField matches a Config field path in an error's text.
var configField = regexp.MustCompile(`Config(\.[A-Z][A-Za-z0-9]*)+`)

// flagError rewrites a *fielderr.Error in err into "--flag: reason" using
// cmd's annotations; field paths named in the reason become their flags too.
// Errors about fields no flag sets are returned unchanged.
func flagError(cmd *cobra.Command, err error) error {
	fe, ok := fielderr.As(err)
	if !ok {
		return err
	}
	flags := map[string]string{}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if v := f.Annotations[fieldAnnotation]; len(v) == 1 {
			flags[v[0]] = "--" + f.Name
		}
	})
	flag, ok := flags[fe.Field]
	if !ok {
		return err
	}
	reason := configField.ReplaceAllStringFunc(fe.Err.Error(), func(field string) string {
		if f, ok := flags[field]; ok {
			return f
		}
		return field
	})
	return &flagErr{msg: flag + ": " + reason, err: err}
}

// flagErr is an error reworded for the command line that still unwraps to
// the library's error.
type flagErr struct {
	msg string
	err error
}

func (e *flagErr) Error() string { return e.msg }
func (e *flagErr) Unwrap() error { return e.err }
