package main

import (
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
		panic("annotateField: no flag --" + name)
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	if !slices.Contains(f.Annotations[fieldAnnotation], field) {
		f.Annotations[fieldAnnotation] = append(f.Annotations[fieldAnnotation], field)
	}
}

// flagError rewrites a *fielderr.Error in err into "--flag: reason" using
// cmd's annotations. An error without a field, or whose field no flag of cmd
// sets, is returned as is. Context around the field error is kept, and the
// rewritten error still unwraps to err.
func flagError(cmd *cobra.Command, err error) error {
	fe, ok := fielderr.As(err)
	if !ok || cmd == nil {
		return err
	}
	var flag string
	find := func(f *pflag.Flag) {
		if flag == "" && slices.Contains(f.Annotations[fieldAnnotation], fe.Field) {
			flag = f.Name
		}
	}
	cmd.Flags().VisitAll(find)
	cmd.InheritedFlags().VisitAll(find)
	if flag == "" {
		return err
	}
	// Keep any context around the field error: "opening the log: --log: …".
	msg := strings.Replace(err.Error(), fe.Error(), "--"+flag+": "+fe.Err.Error(), 1)
	return &flagErr{msg: msg, err: err}
}

// flagErr is a field error told in the CLI's words.
type flagErr struct {
	msg string
	err error
}

func (e *flagErr) Error() string { return e.msg }
func (e *flagErr) Unwrap() error { return e.err }
