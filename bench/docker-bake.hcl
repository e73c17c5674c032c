# The project's matrix for `docker buildx bake`, for bench/run: the same Dockerfiles
# imagegen renders, the same context (the worker binary), pushed like imagegen pushes.
variable "REGISTRY" {}
variable "CONTEXT" {}
variable "DOCKERFILES" {}

group "default" {
  targets = ["cpu", "gpu"]
}

target "cpu" {
  context    = CONTEXT
  dockerfile = "${DOCKERFILES}/cpu.Dockerfile"
  platforms  = ["linux/amd64"]
  tags       = ["${REGISTRY}/worker-github_runner:dev-cpu"]
  output     = ["type=image,push=true,registry.insecure=true"]
}

target "gpu" {
  context    = CONTEXT
  dockerfile = "${DOCKERFILES}/gpu.Dockerfile"
  platforms  = ["linux/amd64"]
  tags       = ["${REGISTRY}/worker-github_runner:dev-gpu"]
  output     = ["type=image,push=true,registry.insecure=true"]
}
