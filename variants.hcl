# The image matrix of worker-github_runner.
#
# `imagegen print` shows it fully resolved, `imagegen list` as a table,
# `imagegen render` writes one Dockerfile per variant, `imagegen build` builds
# and pushes every tag. Every variable can be overridden from the environment
# (REGISTRY=ghcr.io/me imagegen print) or with --var NAME=VALUE; lists and maps
# are given as JSON. See README.md, "variants.hcl reference".

variable "REGISTRY" {
  description = "Registry and namespace the images are pushed to."
  default     = "docker.io/runpod"
}

variable "REPOSITORY" {
  description = "Repository name under REGISTRY."
  default     = "worker-github_runner"
}

variable "RELEASE" {
  description = "dev for builds of main; vX.Y.Z for a release."
  default     = "dev"
  validation {
    condition     = RELEASE == "dev" || can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+(-[0-9A-Za-z.-]+)?$", RELEASE))
    error_message = "RELEASE must be dev or a version tag like v1.0.0."
  }
}

# The release pipeline sets LATEST=true only for the highest non-pre-release
# version, so a pre-release or a backport gets only its version tags.
variable "LATEST" {
  description = "true moves latest-*"
  type        = bool
  default     = false
}

# The GitHub Actions runner. GitHub stops queueing jobs to runners more than
# 30 days behind its newest release, so this follows the newest release whose
# checksum we hold; `imagegen runner-bump` keeps it current. The seed shipped
# 2.330.0 (linux-x64 sha256 af5c33fa94f3cc33b8e97937939136a6b04197e6dadfcfb3b6e33ae1bf41e79a).
variable "RUNNER_VERSION" {
  default = "2.338.0"
}

variable "RUNNER_URL" {
  description = "Download base; point it at a mirror to build without github.com."
  default     = "https://github.com/actions/runner/releases/download"
}

variable "RUNNER_SHA256" {
  description = "Runner tarball checksums per platform; PLATFORMS chooses which are built."
  type        = map(string)
  default = {
    "linux/amd64" = "af4b794c1bc41d73d40535e3fe092a39f9679cd8d965954c2aca25a05ca41d32"
    "linux/arm64" = "628b4a7258487b80c1d3c221095a7ded349f5ae0175fd3dfab708d07428f041b"
  }
}

variable "PLATFORMS" {
  type    = list(string)
  default = ["linux/amd64"]
}

# The runner's native libraries, installed explicitly: the runner's own
# installdependencies.sh misses OpenSSL on Ubuntu 24.04 in some releases.
variable "RUNNER_PACKAGES" {
  type    = list(string)
  default = ["libicu74", "libkrb5-3", "liblttng-ust1t64", "libssl3t64", "zlib1g"]
}

# Tools workflow jobs expect on a runner. Python (python3, pip, venv and
# `python` itself, as the seed's image had) adds about 41 MB compressed; sudo is
# installed but grants nothing unless the worker enables it per endpoint
# (README.md, "The job user"). A custom variant can set packages without them.
variable "PACKAGES" {
  type    = list(string)
  default = ["ca-certificates", "curl", "git", "jq", "python-is-python3", "python3", "python3-pip", "python3-venv", "sudo", "unzip", "zstd"]
}

variable "CUDA_VERSION" {
  default = "12.6.3"
}

# Upstream Kaniko (GoogleContainerTools) was archived in June 2025; v1.23.2
# is its last release. To take a maintained fork instead, point KANIKO_IMAGE
# at it, e.g. KANIKO_IMAGE=ghcr.io/osscontainertools/kaniko:<version> with
# KANIKO_VERSION=<version> (README.md, "Kaniko").
variable "KANIKO_VERSION" {
  default = "v1.23.2"
}

variable "KANIKO_IMAGE" {
  description = "The image /kaniko/executor is copied from."
  default     = "gcr.io/kaniko-project/executor:${KANIKO_VERSION}"
}

# The Go toolchain of the Dockerfiles' worker stage, which compiles
# cmd/worker when a Dockerfile is built on its own (docker build, the RunPod
# Hub); imagegen puts its own binaries in that stage's place. At least the
# go line of go.mod.
variable "GO_VERSION" {
  default = "1.26.8"
}

variable "GO_IMAGE" {
  description = "The image the worker stage compiles in."
  default     = "golang:${GO_VERSION}"
}

# The autoscaler's image (cmd/scaler, README.md "Autoscaling"): a static
# binary on a distroless base running as its nonroot user (65532).
variable "SCALER_BASE" {
  description = "The scaler image's base: distroless static, or scratch."
  default     = "gcr.io/distroless/static-debian12:nonroot"
}

# Attestations (bake's --attest vocabulary, README.md "Attestations"):
# release builds carry BuildKit's SLSA provenance (mode=max) and an SBOM
# made by BuildKit's scanner image, docker/buildkit-syft-scanner:stable-1;
# dev builds none. --var 'ATTEST=[]' turns them off (Kaniko cannot
# attest), `imagegen build --attest type=sbom,disabled=true` one of them.
variable "ATTEST" {
  type    = list(string)
  default = RELEASE == "dev" ? [] : ["type=provenance,mode=max", "type=sbom"]
}

runner {
  version = RUNNER_VERSION
  url     = RUNNER_URL
  sha256  = RUNNER_SHA256
}

kaniko {
  version = KANIKO_VERSION
  image   = KANIKO_IMAGE
}

golang {
  version = GO_VERSION
  image   = GO_IMAGE
}

# Shared by every flavour; abstract variants are not built.
variant "common" {
  abstract        = true
  image           = "${REGISTRY}/${REPOSITORY}"
  platforms       = PLATFORMS
  runner_packages = RUNNER_PACKAGES
  packages        = PACKAGES
  attest          = ATTEST
  labels = {
    "org.opencontainers.image.source"  = "https://github.com/runpod-workers/worker-github_runner"
    "org.opencontainers.image.version" = RELEASE
  }
}

variant "gpu" {
  inherits = ["common"]
  flavour  = "gpu"
  cuda     = CUDA_VERSION
  base     = "nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu24.04"
  tags     = ["${RELEASE}-gpu", LATEST ? "latest-gpu" : null]
}

variant "cpu" {
  inherits = ["common"]
  flavour  = "cpu"
  base     = "ubuntu:24.04"
  tags     = ["${RELEASE}-cpu", LATEST ? "latest-cpu" : null]
}

# The scaler: no runner, no Kaniko, no CUDA, no packages (flavour "scaler").
variant "scaler" {
  flavour   = "scaler"
  base      = SCALER_BASE
  image     = "${REGISTRY}/${REPOSITORY}"
  platforms = PLATFORMS
  attest    = ATTEST
  tags      = ["${RELEASE}-scaler", LATEST ? "latest-scaler" : null]
  labels = {
    "org.opencontainers.image.source"  = "https://github.com/runpod-workers/worker-github_runner"
    "org.opencontainers.image.version" = RELEASE
  }
}
