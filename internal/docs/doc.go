// Package docs holds the tests that keep the repository's documents honest:
// README_CN.md says what README.md says (the worker's input fields, its
// environment variables and the commands), .runpod/hub.json sets only
// variables the worker reads, and the files the project promises exist.
package docs
