// Command archprobe prints the architecture it was compiled for. Built for
// linux/arm64, it tells scripts/devenv whether arm64 binaries run on this
// machine (under qemu-user through binfmt_misc): it prints "arm64" then.
package main

import (
	"fmt"
	"runtime"
)

func main() { fmt.Println(runtime.GOARCH) }
