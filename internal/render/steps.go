package render

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	dfi "github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

// StepsEnd is the instruction the template writes after a variant's steps:
// the runner layer that follows needs root whatever the steps did.
const StepsEnd = "USER root"

// CheckSteps parses every build step of a variant with BuildKit's
// Dockerfile parser and instruction checks, on its own, so a mistake is
// reported at its line in the variants file (files gives the sources)
// rather than somewhere in the rendered Dockerfile.
func CheckSteps(v *variants.Variant, files variants.Files) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for i, step := range v.Steps {
		line, err := checkStep(step)
		if err == nil {
			continue
		}
		rng := v.StepAt(i)
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid build step",
			Detail:   fmt.Sprintf("Variant %q, step %d, line %d: %s.", v.Name, i+1, line, variants.EscapeControl(err.Error())),
			Subject:  stepLine(rng, line, files),
		})
	}
	return diags
}

// checkStep parses one step followed by StepsEnd, as the template writes
// it, and says on which line of the step a problem is.
func checkStep(step string) (int, error) {
	body := strings.TrimRight(step, "\n")
	if strings.TrimSpace(body) == "" {
		return 1, errors.New("the step is empty")
	}
	res, err := parser.Parse(strings.NewReader(body + "\n" + StepsEnd + "\n"))
	if err != nil {
		return 1, err
	}
	nodes := res.AST.Children
	last := nodes[len(nodes)-1]
	end := strings.Count(body, "\n") + 2
	if last.Original != StepsEnd || last.StartLine != end {
		return last.StartLine, errors.New(`it does not end: a trailing line continuation (\) or an open heredoc would swallow the instruction after it`)
	}
	if len(nodes) == 1 {
		return 1, errors.New("the step has no instruction (only comments)")
	}
	for _, n := range nodes[:len(nodes)-1] {
		if strings.EqualFold(n.Value, "from") {
			return n.StartLine, errors.New("FROM is not allowed: a step cannot start a new stage (use base, or a variant of your own template)")
		}
		if _, err := dfi.ParseInstruction(n); err != nil {
			return n.StartLine, err
		}
	}
	return 1, nil
}

// stepLine narrows a step's range to line (1-based) of the step when the
// step spans lines in the file (a heredoc string: its text starts on the
// line after <<EOT); a one-line string keeps its range.
func stepLine(rng *hcl.Range, line int, files variants.Files) *hcl.Range {
	if rng == nil || rng.End.Line == rng.Start.Line {
		return rng
	}
	f, ok := files[rng.Filename]
	if !ok || f == nil {
		return rng
	}
	want := rng.Start.Line + line
	if want >= rng.End.Line {
		return rng
	}
	start := 0
	for n := 1; n < want; n++ {
		i := bytes.IndexByte(f.Bytes[start:], '\n')
		if i < 0 {
			return rng
		}
		start += i + 1
	}
	end := start + len(f.Bytes[start:])
	if i := bytes.IndexByte(f.Bytes[start:], '\n'); i >= 0 {
		end = start + i
	}
	return &hcl.Range{
		Filename: rng.Filename,
		Start:    hcl.Pos{Line: want, Column: 1, Byte: start},
		End:      hcl.Pos{Line: want, Column: end - start + 1, Byte: end},
	}
}
