# A variant whose matrix has 1,000 combinations, for timing print and render
# beside variants.hcl (-f variants.hcl -f this file): the render timing check
# (go run ./bench/cmd/bench check-render) and BenchmarkPrintRender1000.
variant "m" {
  inherits = ["common"]
  matrix   = { a = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"], b = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"], c = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"] }
  name     = "m-${a}-${b}-${c}"
  flavour  = "cpu"
  base     = "ubuntu:24.04"
  tags     = ["${a}-${b}-${c}"]
  packages = concat(PACKAGES, [a])
}
