// Package release tests the release workflows (.github/workflows/release.yml,
// publish.yml, runner-bump.yml) and the script that holds their decisions
// (.github/scripts/release-plan.sh): which tags a release moves, where the
// images go and how they are signed, and that the runner bump fails loudly.
// It has no code of its own.
package release
