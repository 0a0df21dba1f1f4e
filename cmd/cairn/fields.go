package main

import (
	"fmt"
	"slices"

	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// fieldAnnotation is the flag annotation naming the library Config field a
// flag sets.
const fieldAnnotation = "cairn-field"

// annotateField records that flag name sets the library's Config field path.
func annotateField(fs *pflag.FlagSet, name, field string) {
	_ = fs.SetAnnotation(name, fieldAnnotation, []string{field})
}

// flagError rewrites a *fielderr.Error in err into "--flag: reason" using
// cmd's annotations. Other errors, and fields no flag sets, are returned as
// they are.
func flagError(cmd *cobra.Command, err error) error {
	fe, ok := fielderr.As(err)
	if !ok {
		return err
	}
	var flag string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if flag == "" && slices.Contains(f.Annotations[fieldAnnotation], fe.Field) {
			flag = f.Name
		}
	})
	if flag == "" {
		return err
	}
	return fmt.Errorf("--%s: %w", flag, fe.Err)
}
