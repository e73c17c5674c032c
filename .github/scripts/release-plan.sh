#!/usr/bin/env bash
# The release workflows' decisions, in one place so that internal/release can
# test them (README, "Published images").
#
#   release-plan.sh latest TAG PRERELEASE < tags
#       true when the release TAG moves latest-*: a vX.Y.Z (no pre-release
#       suffix), PRERELEASE not "true", and the highest such version among
#       the repository's tags (one per line on stdin; TAG counts as one).
#       Else false. The reason goes to stderr.
#   release-plan.sh newest < tags
#       the highest vX.Y.Z among the tags, or nothing.
#   release-plan.sh registry IMAGE_REGISTRY
#       host=<registry host> and login=dockerhub|ghcr|other, for
#       $GITHUB_OUTPUT: where the images go, so the workflow logs in there.
#   release-plan.sh sign-refs METADATA_FILE
#       image@digest, one per variant of imagegen's --metadata-file.
#   release-plan.sh runner PRINT_JSON_FILE
#       version=... and sha256=<JSON map>, the runner of `imagegen print`.
#   release-plan.sh publish KIND REF PRERELEASE
#       what a publish run builds, in the checkout of REF (the current
#       folder): RELEASE, LATEST (and for a rebuild RUNNER_VERSION and
#       RUNNER_SHA256) appended to $GITHUB_ENV; publish=true|false and
#       src=<folder to build in> to $GITHUB_OUTPUT. KIND is
#         dev      a main commit whose CI passed: dev-*, unless main moved on
#                  (the newer commit's run publishes);
#         release  a published release REF: its version tags, latest-* as
#                  `latest` says;
#         rebuild  the newest release, rebuilt from its tag (checked out
#                  in release-src) with main's runner when that is newer
#                  than the release's: its version tags and latest-*.
#   release-plan.sh runner-moved
#       moved=true when HEAD changed the runner or an image the builds pull
#       (a base, the Go or Kaniko image, or their pins) against its first
#       parent (a merged runner-bump or base-pin), else moved=false.
set -euo pipefail
shopt -s inherit_errexit

# A release version, as variants.hcl's RELEASE accepts it; no leading zeros.
num='(0|[1-9][0-9]*)'
final_re="^v$num\.$num\.$num\$"
release_re="^v$num\.$num\.$num(-[0-9A-Za-z.-]+)?\$"

die() {
    echo "release-plan: $*" >&2
    exit 2
}

# quoted VALUE: VALUE for a message, cut to 80 bytes (hostile input).
quoted() { printf '%q' "${1:0:80}"; }

newest() {
    grep -E "$final_re" | sort -V | tail -n 1 || true
}

latest() {
    local tag="$1" pre="$2" top all
    all="$(cat)" # read every tag first: a writer cut off by SIGPIPE fails the pipeline
    [[ "$tag" =~ $release_re ]] || die "release tag $(quoted "$tag") is not vX.Y.Z or vX.Y.Z-PRERELEASE"
    case "$pre" in true | false) ;; *) die "PRERELEASE must be true or false, not $(quoted "$pre")" ;; esac
    if [ "$pre" = true ] || ! [[ "$tag" =~ $final_re ]]; then
        echo "$tag is a pre-release: latest-* stays" >&2
        echo false
        return
    fi
    top="$(printf '%s\n%s\n' "$all" "$tag" | newest)"
    if [ "$top" != "$tag" ]; then
        echo "$top is newer than $tag: latest-* stays" >&2
        echo false
        return
    fi
    echo "$tag is the newest release: latest-* moves to it" >&2
    echo true
}

registry() {
    local reg="$1" host
    [ -n "$reg" ] || die "IMAGE_REGISTRY is empty: give host/namespace, e.g. ghcr.io/my-org"
    [[ "$reg" =~ ^[A-Za-z0-9._:/-]+$ ]] || die "IMAGE_REGISTRY $(quoted "$reg") is not host/namespace (letters, digits, . _ : / - only)"
    host="${reg%%/*}"
    # As Docker reads REGISTRY/REPOSITORY: a first component without . or :
    # (and not localhost) is a Docker Hub namespace.
    if [[ "$host" != *.* && "$host" != *:* && "$host" != localhost ]]; then
        host=docker.io
    fi
    case "$host" in
    docker.io | index.docker.io | registry-1.docker.io) echo "host=docker.io" && echo "login=dockerhub" ;;
    ghcr.io) echo "host=ghcr.io" && echo "login=ghcr" ;;
    *) echo "host=$host" && echo "login=other" ;;
    esac
}

sign_refs() {
    local file="$1" refs
    [ -f "$file" ] || die "metadata file $(quoted "$file") does not exist: did the build write it?"
    refs="$(jq -r '.variants // error("no variants") | to_entries[] | "\(.value.image)@\(.value.digest)"' "$file" 2>/dev/null)" ||
        die "$(quoted "$file") is not imagegen's --metadata-file JSON ({\"variants\": {...}})"
    [ -n "$refs" ] || die "$(quoted "$file") lists no variant: nothing was pushed"
    while IFS= read -r ref; do
        [[ "$ref" =~ ^[a-z0-9][a-z0-9._:/-]*@sha256:[0-9a-f]{64}$ ]] ||
            die "$(quoted "$file") has $(quoted "$ref"), not image@sha256:<64 hex>"
    done <<<"$refs"
    sort -u <<<"$refs"
}

runner() {
    local file="$1" version sums
    version="$(jq -r '[.variants[].runner.version] | unique | if length == 1 then .[0] else error("variants disagree") end' "$file" 2>/dev/null)" ||
        die "$(quoted "$file"): not imagegen print JSON with one runner version"
    [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "runner version $(quoted "$version") is not X.Y.Z"
    sums="$(jq -c '.variants[0].runner.sha256' "$file")"
    echo "version=$version"
    echo "sha256=$sums"
}

# runner_of DIR [images]: version=/sha256= lines of the runner DIR's
# variants.hcl holds; with "images", also images=<JSON list> of the images
# its builds pull, as resolved (with their pins). One imagegen print.
runner_of() {
    local json
    json="$(mktemp)"
    (cd "$1" && go run ./cmd/imagegen print) >"$json" || die "imagegen print failed in $1"
    runner "$json"
    if [ "${2:-}" = images ]; then
        printf 'images=%s\n' "$(jq -c '[.variants[] | .base, .golang.image?, .kaniko.image?] | map(select(. != null)) | unique' "$json")"
    fi
    rm -f "$json"
}

runner_moved() {
    local prev now before
    if ! git rev-parse -q --verify 'HEAD^1' >/dev/null; then
        echo "moved=true"
        return
    fi
    prev="$(mktemp -d)"
    git worktree add -q --detach "$prev" 'HEAD^1' >&2
    # shellcheck disable=SC2064 # $prev is fixed now
    trap "git worktree remove --force '$prev' >/dev/null 2>&1 || true" EXIT
    now="$(runner_of . images)"
    before="$(runner_of "$prev" images)"
    git worktree remove --force "$prev" >&2
    if [ "$now" != "$before" ]; then echo "moved=true"; else echo "moved=false"; fi
}

publish() {
    local kind="$1" ref="$2" pre="$3" tip newest
    : "${GITHUB_ENV:?}" "${GITHUB_OUTPUT:?}"
    case "$kind" in
    dev)
        tip="$(git ls-remote origin refs/heads/main | cut -f1)"
        [ -n "$tip" ] || die "origin has no main branch"
        if [ "$tip" != "$(git rev-parse HEAD)" ]; then
            echo "main moved on to $tip: that commit's run publishes dev-*" >&2
            echo "publish=false" >>"$GITHUB_OUTPUT"
            return
        fi
        printf 'RELEASE=dev\nLATEST=false\n' >>"$GITHUB_ENV"
        printf 'publish=true\nsrc=.\n' >>"$GITHUB_OUTPUT"
        ;;
    release)
        local latest
        latest="$(git tag -l | latest "$ref" "$pre")"
        printf 'RELEASE=%s\nLATEST=%s\n' "$ref" "$latest" >>"$GITHUB_ENV"
        printf 'publish=true\nsrc=.\n' >>"$GITHUB_OUTPUT"
        ;;
    rebuild)
        newest="$(git tag -l | newest)"
        if [ -z "$newest" ]; then
            echo "no vX.Y.Z release yet: nothing to rebuild" >&2
            echo "publish=false" >>"$GITHUB_OUTPUT"
            return
        fi
        local main_runner release_runner mine theirs
        main_runner="$(runner_of .)"
        git worktree add -q --detach release-src "refs/tags/$newest" >&2
        release_runner="$(runner_of release-src)"
        printf 'RELEASE=%s\nLATEST=true\n' "$newest" >>"$GITHUB_ENV"
        mine="$(sed -n 's/^version=//p' <<<"$release_runner")"
        theirs="$(sed -n 's/^version=//p' <<<"$main_runner")"
        if [ "$(printf '%s\n%s\n' "$mine" "$theirs" | sort -V | tail -n 1)" = "$mine" ]; then
            echo "rebuilding $newest with its own runner $mine (main has $theirs)" >&2
        else
            echo "rebuilding $newest with main's runner $theirs (the release has $mine)" >&2
            sed 's/^version=/RUNNER_VERSION=/; s/^sha256=/RUNNER_SHA256=/' <<<"$main_runner" >>"$GITHUB_ENV"
        fi
        printf 'publish=true\nsrc=release-src\n' >>"$GITHUB_OUTPUT"
        ;;
    *) die "publish KIND must be dev, release or rebuild, not $(quoted "$kind")" ;;
    esac
}

cmd="${1:-}"
shift || true
case "$cmd" in
latest) [ $# -eq 2 ] || die "usage: latest TAG PRERELEASE < tags" && latest "$@" ;;
newest) [ $# -eq 0 ] || die "usage: newest < tags" && newest ;;
registry) [ $# -eq 1 ] || die "usage: registry IMAGE_REGISTRY" && registry "$@" ;;
sign-refs) [ $# -eq 1 ] || die "usage: sign-refs METADATA_FILE" && sign_refs "$@" ;;
runner) [ $# -eq 1 ] || die "usage: runner PRINT_JSON_FILE" && runner "$@" ;;
publish) [ $# -eq 3 ] || die "usage: publish KIND REF PRERELEASE" && publish "$@" ;;
runner-moved) [ $# -eq 0 ] || die "usage: runner-moved" && runner_moved ;;
*) die "unknown command $(quoted "$cmd"): latest, newest, registry, sign-refs, runner, publish or runner-moved" ;;
esac
