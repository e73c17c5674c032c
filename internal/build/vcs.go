package build

import (
	"context"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// VCS names the source repository and commit a build comes from: what
// buildx sends BuildKit as the frontend attributes vcs:source and
// vcs:revision, which BuildKit records in the provenance.
type VCS struct {
	Source   string
	Revision string
}

// gitTimeout bounds each git command GitVCS runs.
const gitTimeout = 10 * time.Second

// GitVCS finds the repository and commit of dir as buildx does
// (build/git.go of buildx v0.38.2): the revision is `git rev-parse HEAD`,
// with "-dirty" appended only when BUILDX_GIT_CHECK_DIRTY is true and the
// work tree has changes; the source is the remote URL of origin (else
// upstream), without user-info (buildx masks it; imagegen drops it, and
// the query, so no token ever reaches an attestation). In GitHub Actions
// the source is GITHUB_SERVER_URL/GITHUB_REPOSITORY. Outside a git work
// tree, without git, or with BUILDX_GIT_INFO=false: nothing.
func GitVCS(ctx context.Context, dir string, getenv func(string) string) VCS {
	if on, err := strconv.ParseBool(getenv("BUILDX_GIT_INFO")); err == nil && !on {
		return VCS{}
	}
	if inside, _ := git(ctx, dir, "rev-parse", "--is-inside-work-tree"); inside != "true" {
		return VCS{}
	}
	var v VCS
	if sha, err := git(ctx, dir, "rev-parse", "--verify", "-q", "HEAD"); err == nil {
		v.Revision = sha
		if dirty, _ := strconv.ParseBool(getenv("BUILDX_GIT_CHECK_DIRTY")); dirty && isDirty(ctx, dir) {
			v.Revision += "-dirty"
		}
	}
	v.Source = actionsSource(getenv)
	for _, remote := range []string{"origin", "upstream"} {
		if v.Source != "" {
			break
		}
		if u, err := git(ctx, dir, "remote", "get-url", remote); err == nil {
			v.Source = StripUserInfo(u)
		}
	}
	return v
}

// actionsSource is the repository's address in GitHub Actions, else "".
func actionsSource(getenv func(string) string) string {
	server, repo := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY")
	if getenv("GITHUB_ACTIONS") != "true" || server == "" || repo == "" {
		return ""
	}
	return StripUserInfo(strings.TrimRight(server, "/") + "/" + repo)
}

// isDirty is buildx's check: anything in `git status --porcelain --ignored`.
func isDirty(ctx context.Context, dir string) bool {
	out, err := git(ctx, dir, "status", "--porcelain", "--ignored")
	return out != "" || err != nil
}

// StripUserInfo drops the user-info (a user, a password or token) of a
// remote URL, and its query and fragment; an scp-like remote
// (user@host:path) loses its user. Anything else is returned as it is.
func StripUserInfo(remote string) string {
	if u, err := url.Parse(remote); err == nil && u.Scheme != "" && (u.Host != "" || u.User != nil) {
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		return u.String()
	}
	// user@host:path (or anything with an @ before its first /): drop
	// everything up to the last such @; and any query.
	remote, _, _ = strings.Cut(remote, "?")
	head := remote
	if slash := strings.IndexByte(remote, '/'); slash >= 0 {
		head = remote[:slash]
	}
	if at := strings.LastIndexByte(head, '@'); at >= 0 {
		return remote[at+1:]
	}
	return remote
}

// git runs git in dir, bounded in time, and gives its trimmed output.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}
