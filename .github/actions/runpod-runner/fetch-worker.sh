#!/usr/bin/env bash
# fetch-worker.sh DEST: put the released worker binary for this action's
# own ref at DEST, verified against the release's SHA256SUMS, and write
# compile=false to GITHUB_OUTPUT; or write compile=true when the action
# must build it from its source (a branch, a commit, a local action, a
# release without binaries, an unknown architecture).
#
# The ref comes from the action's folder, which Actions checks out at
# <work>/_actions/<owner>/<repo>/<ref>/ (github.action_ref is unreliable in
# composite actions: actions/runner#2473). A release tag vX.Y.Z names its
# release; a major or minor tag (v1, v1.2) names the release in the
# VERSION file beside this script (the release workflow moves v1 only to a
# release whose VERSION says so).
#
# Environment: WGR_ACTION_PATH (github.action_path), WGR_SERVER_URL
# (github.server_url, default https://github.com; plain http only to
# 127.0.0.1/localhost, for tests), RUNNER_OS (Linux; others fail
# clearly), RUNNER_ARCH (X64 or ARM64), GITHUB_OUTPUT.
# A binary that does not match its sum, or does not say the release's
# version, is an error: never run, never silently replaced by a build.
set -Eeuo pipefail

dest="${1:?usage: fetch-worker.sh DEST}"
out="${GITHUB_OUTPUT:-/dev/stdout}"

compile() {
    echo "Building the worker from the action's source: $1"
    echo "compile=true" >>"$out"
    exit 0
}

# ref_of PATH: owner/repo/ref of a checked-out action, or nothing.
ref_of() {
    local suffix=/.github/actions/runpod-runner base ref repo owner rest
    base="${1%/}"
    [[ "$base" == *"$suffix" ]] || return 0
    base="${base%"$suffix"}"
    ref="${base##*/}" rest="${base%/*}"
    repo="${rest##*/}" rest="${rest%/*}"
    owner="${rest##*/}" rest="${rest%/*}"
    [ "${rest##*/}" = "_actions" ] || return 0
    echo "$owner/$repo/$ref"
}

# The worker (its runner supervisor) builds for Linux only, and the
# releases hold Linux binaries: the start and stop jobs run on Linux.
if [ "${RUNNER_OS:-Linux}" != Linux ]; then
    echo "::error::the runpod-runner action runs on Linux runners, not on RUNNER_OS=${RUNNER_OS}: use runs-on: ubuntu-latest for the jobs that start and stop the RunPod runners"
    exit 1
fi

action_path="${WGR_ACTION_PATH:?WGR_ACTION_PATH is not set}"
where="$(ref_of "$action_path")"
[ -n "$where" ] || compile "a local action (uses: ./...), not a checked-out release"
ref="${where##*/}" repo="${where%/*}"

if [[ "$ref" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    version="$ref"
elif [[ "$ref" =~ ^v[0-9]+(\.[0-9]+)?$ ]]; then
    version="$(tr -d ' \t\r\n' <"$action_path/VERSION" 2>/dev/null || true)"
    if ! [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ && "$version" == "$ref".* ]]; then
        compile "ref $ref: its VERSION file does not name a $ref.x release"
    fi
else
    compile "ref $ref is not a release tag"
fi

case "${RUNNER_ARCH:-}" in
X64) arch=amd64 ;;
ARM64) arch=arm64 ;;
*) compile "no released binary for runner architecture '${RUNNER_ARCH:-}'" ;;
esac

server="${WGR_SERVER_URL:-https://github.com}"
server="${server%/}"
case "$server" in
https://*) proto='=https' ;;
http://127.0.0.1:* | http://localhost:*) proto='=http' ;;
*) compile "the server URL is not https" ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
asset="worker-linux-$arch"
base="$server/$repo/releases/download/$version"
for f in SHA256SUMS "$asset"; do
    if ! curl -fsSL --proto "$proto" --proto-redir '=https' --retry 3 --connect-timeout 20 --max-time 300 \
        -o "$tmp/$f" "$base/$f"; then
        echo "::warning::could not download $f of release $version"
        compile "release $version has no $f to download"
    fi
done

want="$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")"
got="$(sha256sum "$tmp/$asset" | cut -d' ' -f1)"
if ! [[ "$want" =~ ^[0-9a-f]{64}$ ]]; then
    echo "::error::release $version's SHA256SUMS has no sum for $asset"
    exit 1
fi
if [ "$got" != "$want" ]; then
    echo "::error::$asset of release $version does not match its SHA-256 sum in SHA256SUMS (got $got, want $want): not using it"
    exit 1
fi
chmod +x "$tmp/$asset"
said="$("$tmp/$asset" --version 2>&1 || true)"
if [ "$said" != "worker $version" ]; then
    echo "::error::$asset of release $version says it is '${said:0:80}', not worker $version"
    exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$tmp/$asset" "$dest"
echo "Using the released worker $version ($asset, sha256 $got)"
echo "compile=false" >>"$out"
