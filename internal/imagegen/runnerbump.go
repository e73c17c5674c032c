package imagegen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/runpod-workers/worker-github_runner/internal/platform"
	"github.com/runpod-workers/worker-github_runner/internal/variants"
)

type bumpFlags struct {
	apiURL string
	dryRun bool
	// Set by the command, not flags: the API client and GITHUB_TOKEN.
	client *http.Client
	token  string
}

func newRunnerBumpCommand(mf *matrixFlags) *cobra.Command {
	bf := &bumpFlags{}
	cmd := &cobra.Command{
		Use:   "runner-bump [VERSION]",
		Short: "Move variants.hcl to a GitHub Actions runner release (default: the latest)",
		Long: `runner-bump reads a runner release (the latest, or VERSION) and its SHA-256 sums from
GitHub's API and rewrites the default of RUNNER_VERSION and RUNNER_SHA256 in the variants
file in place, keeping comments and layout. Every platform RUNNER_SHA256 lists needs a sum
in the release; a release that lacks one is refused and nothing is written.

GitHub stops queueing jobs to runners more than 30 days behind its newest release: run this
(the scheduled runner-bump workflow does) and publish new images.
GITHUB_TOKEN, when set, authenticates the API calls (higher rate limit).`,
		Example: `  imagegen runner-bump
  imagegen runner-bump 2.338.0
  imagegen runner-bump --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(mf.files) != 1 {
				return usageError("runner-bump rewrites one file: give exactly one -f")
			}
			version := ""
			if len(args) == 1 {
				version = strings.TrimPrefix(args[0], "v")
				if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(version) {
					return usageError("VERSION %q must look like 2.338.0", args[0])
				}
			}
			bf.client = &http.Client{Timeout: 30 * time.Second}
			bf.token = os.Getenv("GITHUB_TOKEN")
			return runnerBump(cmd.Context(), cmd.OutOrStdout(), mf.files[0], version, bf)
		},
	}
	cmd.Flags().StringVar(&bf.apiURL, "api-url", "https://api.github.com", "GitHub API base URL")
	cmd.Flags().BoolVar(&bf.dryRun, "dry-run", false, "show what would change, write nothing")
	return cmd
}

// Release is a runner release with its Linux checksums by platform.
type Release struct {
	Version string
	SHA256  map[string]string // linux/amd64 -> sum
}

var shaMarkerRE = regexp.MustCompile(`<!--\s*BEGIN SHA linux-([a-z0-9]+)\s*-->\s*([0-9a-f]{64})\s*<!--\s*END SHA linux-[a-z0-9]+\s*-->`)

// FetchRelease reads a release of actions/runner (the latest when version
// is empty) through client from the API at apiURL, and the Linux tarballs'
// sums for the platforms of the platform table: the assets' digests, else
// the sums in the notes (refused when the two disagree). A non-empty token
// authenticates the call.
func FetchRelease(ctx context.Context, client *http.Client, apiURL, token, version string) (*Release, error) {
	path := "/repos/actions/runner/releases/latest"
	if version != "" {
		path = "/repos/actions/runner/releases/tags/v" + version
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(apiURL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the runner release: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == 404 {
		return nil, fmt.Errorf("actions/runner has no release v%s", version)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("read the runner release: HTTP %d", resp.StatusCode)
	}
	var rel apiRelease
	if err := json.Unmarshal(b, &rel); err != nil {
		return nil, fmt.Errorf("read the runner release: %w", err)
	}
	return rel.sums()
}

// apiRelease is the part of GitHub's release object runner-bump reads.
type apiRelease struct {
	TagName string `json:"tag_name"`
	Body    string `json:"body"`
	Assets  []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	} `json:"assets"`
}

var sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// sums takes each Linux tarball's SHA-256 from the asset's digest
// ("sha256:<hex>") where the API gives one, else from the notes, and
// refuses when both are given and disagree.
func (rel *apiRelease) sums() (*Release, error) {
	out := &Release{Version: strings.TrimPrefix(rel.TagName, "v"), SHA256: map[string]string{}}
	for _, m := range shaMarkerRE.FindAllStringSubmatch(rel.Body, -1) {
		if p, ok := platform.ByRunnerArch(m[1]); ok {
			out.SHA256[p.Name] = m[2]
		}
	}
	for _, a := range rel.Assets {
		p, ok := tarballPlatform(a.Name, out.Version)
		if !ok || !strings.HasPrefix(a.Digest, "sha256:") {
			continue
		}
		sum := strings.TrimPrefix(a.Digest, "sha256:")
		if !sha256HexRE.MatchString(sum) {
			return nil, fmt.Errorf("runner release v%s, asset %s: malformed digest (want sha256:<64 hex>): refusing", out.Version, a.Name)
		}
		if notes := out.SHA256[p]; notes != "" && notes != sum {
			return nil, fmt.Errorf("runner release v%s, asset %s: the release API's digest sha256:%s disagrees with the release notes' %s: refusing (nothing written)", out.Version, a.Name, sum, notes)
		}
		out.SHA256[p] = sum
	}
	return out, nil
}

// tarballPlatform is the platform of the runner tarball named name for
// version (actions-runner-linux-x64-2.338.0.tar.gz: linux/amd64).
func tarballPlatform(name, version string) (string, bool) {
	arch, ok := strings.CutPrefix(name, "actions-runner-linux-")
	if !ok {
		return "", false
	}
	arch, ok = strings.CutSuffix(arch, "-"+version+".tar.gz")
	if !ok {
		return "", false
	}
	p, ok := platform.ByRunnerArch(arch)
	return p.Name, ok
}

func runnerBump(ctx context.Context, w io.Writer, file, version string, bf *bumpFlags) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	oldVersion, platforms, err := variants.RunnerDefaults(file, src)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	rel, err := FetchRelease(ctx, bf.client, bf.apiURL, bf.token, version)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	var missing []string
	sums := map[string]string{}
	for _, p := range platforms {
		if rel.SHA256[p] == "" {
			missing = append(missing, p)
			continue
		}
		sums[p] = rel.SHA256[p]
	}
	if len(missing) > 0 {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("runner v%s publishes no SHA-256 for %s, which %s builds: refusing (nothing written)", rel.Version, strings.Join(missing, ", "), file)}
	}
	if rel.Version == oldVersion {
		fmt.Fprintf(w, "%s: runner already at %s\n", file, oldVersion)
		return nil
	}
	out, err := variants.BumpRunner(file, src, rel.Version, sums)
	if err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	for _, p := range platforms {
		fmt.Fprintf(w, "%s: runner %s -> %s, %s sha256 %s\n", file, oldVersion, rel.Version, p, rel.SHA256[p])
	}
	if bf.dryRun {
		fmt.Fprintln(w, "dry run: nothing written")
		return nil
	}
	if bytes.Equal(out, src) {
		return nil
	}
	if err := writeFileAtomic(file, out); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	return nil
}
