package render

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Warning is one finding of BuildKit's Dockerfile linter.
type Warning struct {
	Rule    string
	Message string
	Line    int
}

func (w Warning) String() string {
	return fmt.Sprintf("line %d: %s: %s", w.Line, w.Rule, w.Message)
}

// Lint runs BuildKit's Dockerfile checks (the ones `docker build --check`
// runs) in-process. Base images are never looked up: a resolver answers
// every lookup with an empty linux/amd64 config, so linting works offline.
func Lint(ctx context.Context, dockerfile []byte) ([]Warning, error) {
	src := llb.Scratch()
	def, err := src.Marshal(ctx)
	if err != nil {
		return nil, fmt.Errorf("lint: %w", err)
	}
	sm := llb.NewSourceMap(&src, "Dockerfile", "Dockerfile", dockerfile)
	sm.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dockerfile, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{BuildArgs: map[string]string{}},
		MetaResolver: offlineResolver{},
		SourceMap:    sm,
	})
	if err != nil {
		return nil, fmt.Errorf("lint: %w", err)
	}
	var out []Warning
	for _, w := range res.Warnings {
		line := 0
		if len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		out = append(out, Warning{Rule: w.RuleName, Message: w.Detail, Line: line})
	}
	if res.Error != nil {
		return out, fmt.Errorf("lint: Dockerfile does not parse: %s", res.Error.Message)
	}
	return out, nil
}

// FormatWarnings joins warnings one per line.
func FormatWarnings(ws []Warning) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String())
		b.WriteByte('\n')
	}
	return b.String()
}

type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg, err := json.Marshal(ocispecs.Image{Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(cfg), cfg, nil
}
