# The project's matrix for `docker buildx bake`, for bench/run: the same Dockerfiles
# imagegen renders, the worker binary in place of their two worker stages (the
# named contexts "worker" and "worker-build", as imagegen gives them), pushed like imagegen pushes.
variable "REGISTRY" {}
variable "CONTEXT" {}
variable "DOCKERFILES" {}

group "default" {
  targets = ["cpu", "gpu"]
}

target "cpu" {
  context    = CONTEXT
  contexts   = { worker = CONTEXT, "worker-build" = CONTEXT }
  dockerfile = "${DOCKERFILES}/cpu.Dockerfile"
  platforms  = ["linux/amd64"]
  tags       = ["${REGISTRY}/worker-github_runner:dev-cpu"]
  output     = ["type=image,push=true,registry.insecure=true"]
}

target "gpu" {
  context    = CONTEXT
  contexts   = { worker = CONTEXT, "worker-build" = CONTEXT }
  dockerfile = "${DOCKERFILES}/gpu.Dockerfile"
  platforms  = ["linux/amd64"]
  tags       = ["${REGISTRY}/worker-github_runner:dev-gpu"]
  output     = ["type=image,push=true,registry.insecure=true"]
}
