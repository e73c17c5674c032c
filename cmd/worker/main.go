// Command worker is the RunPod serverless worker of worker-github_runner.
package main

import (
	"fmt"
	"os"
)

// version is stamped by imagegen with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	for _, a := range os.Args[1:] {
		if a == "--version" || a == "-version" {
			fmt.Println("worker", version)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "worker: the RunPod job loop is not wired yet")
	os.Exit(1)
}
