// Package templates holds the Dockerfile templates imagegen renders the
// variants from, embedded so the binary needs no files beside it.
package templates

import _ "embed"

// Dockerfile is the template for every variant, GPU and CPU alike.
//
//go:embed Dockerfile.tmpl
var Dockerfile string

// Scaler is the template of a scaler variant (flavour "scaler"): the
// autoscaler on a distroless base, parsed with Dockerfile's parts.
//
//go:embed scaler.Dockerfile.tmpl
var Scaler string
