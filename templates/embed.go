// Package templates holds the Dockerfile template imagegen renders every
// variant from, embedded so the binary needs no files beside it.
package templates

import _ "embed"

// Dockerfile is the template for every variant, GPU and CPU alike.
//
//go:embed Dockerfile.tmpl
var Dockerfile string
