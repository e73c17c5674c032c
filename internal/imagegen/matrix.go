package imagegen

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

func newPrintCommand(mf *matrixFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "print [VARIANT...]",
		Short: "Print the resolved matrix as JSON",
		Long: `print evaluates variants.hcl with every override applied and prints the
resulting variants as stable, indented JSON (like docker buildx bake --print).
VARIANT arguments are globs over variant names.`,
		Example: `  imagegen print
  imagegen print 'gpu*'
  RELEASE=v1.0.0 imagegen print cpu
  imagegen print --var 'PLATFORMS=["linux/amd64"]' | jq '.variants[].tags'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := mf.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			vs, err := selectVariants(m, args)
			if err != nil {
				return err
			}
			b, err := MarshalMatrix(&variants.Matrix{Variants: vs})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

// MarshalMatrix is the JSON `imagegen print` writes: indented, keys sorted
// (Go sorts map keys), variants sorted by name, a trailing newline.
func MarshalMatrix(m *variants.Matrix) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func newListCommand(mf *matrixFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list [VARIANT...]",
		Short: "List the variants as a table",
		Example: `  imagegen list
  RELEASE=v1.0.0 imagegen list`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := mf.load(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			vs, err := selectVariants(m, args)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIANT\tFLAVOUR\tPLATFORMS\tBASE\tCOMPRESSION\tTAGS")
			for _, v := range vs {
				flavour := v.Flavour
				if v.CUDA != "" {
					flavour += " (CUDA " + v.CUDA + ")"
				}
				base := v.Base
				if v.BaseVariant != "" {
					base = "variant." + v.BaseVariant
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, flavour, strings.Join(v.Platforms, ","), base, compressionColumn(v), strings.Join(v.Tags, " "))
			}
			return tw.Flush()
		},
	}
}

// compressionColumn is a variant's layer compression for `list`:
// gzip, zstd:19 (a level), zstd,force (forced re-compression).
func compressionColumn(v *variants.Variant) string {
	s := v.Compression
	if v.CompressionLevel != nil {
		s += ":" + strconv.Itoa(*v.CompressionLevel)
	}
	if v.ForceCompression {
		s += ",force"
	}
	return s
}
