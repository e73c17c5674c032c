//go:build race

package imagegen

// raceFlag makes a nested go test build as this one does, sharing its cache.
var raceFlag = []string{"-race"}
