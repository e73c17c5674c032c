// Command imagegen resolves, renders, builds and publishes the
// worker-github_runner image matrix. See `imagegen --help`.
package main

import (
	"os"

	"github.com/runpod-workers/worker-github_runner/internal/imagegen"
)

func main() { os.Exit(imagegen.Run()) }
