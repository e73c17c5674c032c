package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sections maps each "## " heading's English name to its text (with its
// "### " subsections). README_CN.md's headings carry the English name in
// parentheses: "## 工作进程 (The worker)".
func sections(doc string) map[string]string {
	out := map[string]string{}
	parts := regexp.MustCompile(`(?m)^## (.*)$`).FindAllStringSubmatchIndex(doc, -1)
	for i, p := range parts {
		end := len(doc)
		if i+1 < len(parts) {
			end = parts[i+1][0]
		}
		title := doc[p[2]:p[3]]
		if m := regexp.MustCompile(`\(([^()]+)\)\s*$`).FindStringSubmatch(title); m != nil {
			title = m[1]
		}
		out[strings.TrimSpace(title)] = doc[p[1]:end]
	}
	return out
}

var envRE = regexp.MustCompile("`([A-Z][A-Z0-9_]{2,})[`=]")

// envVars lists the environment variables (backticked upper-case names)
// a text mentions.
func envVars(text string) []string {
	set := map[string]bool{}
	for _, m := range envRE.FindAllStringSubmatch(text, -1) {
		set[m[1]] = true
	}
	return sortedKeys(set)
}

// inputTable gives the worker's input fields and their variables: the
// first two columns of the table whose header's first cell names "input".
func inputTable(doc string) (fields, vars []string) {
	fs, vs := map[string]bool{}, map[string]bool{}
	in := false
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(doc, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		switch {
		case !strings.HasPrefix(strings.TrimSpace(line), "|"):
			in = false
		case strings.Contains(strings.ToLower(cells[0]), "input") && len(cells) > 1:
			in = true
		case in && len(cells) > 1:
			for _, m := range tick.FindAllStringSubmatch(cells[0], -1) {
				fs[m[1]] = true
			}
			for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
				vs[m[1]] = true
			}
		}
	}
	return sortedKeys(fs), sortedKeys(vs)
}

// commands lists the project's commands a document shows: scripts/devenv
// and its subcommands, scripts/test, imagegen's subcommands, docker build.
func commands(t *testing.T, doc string) []string {
	t.Helper()
	subs := imagegenSubcommands(t)
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`scripts/devenv(?: (up|build|env|path|status|down|clean)\b)?`).FindAllString(doc, -1) {
		set[m] = true
	}
	for _, m := range regexp.MustCompile(`scripts/test\b|docker build\b|bench/run\b`).FindAllString(doc, -1) {
		set[m] = true
	}
	for _, m := range regexp.MustCompile(`\bimagegen ([a-z][a-z-]*)`).FindAllStringSubmatch(doc, -1) {
		if slices.Contains(subs, m[1]) {
			set["imagegen "+m[1]] = true
		}
	}
	return sortedKeys(set)
}

// imagegenSubcommands reads imagegen's subcommand names from its source.
func imagegenSubcommands(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("../imagegen/*.go")
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`Use:\s+"([a-z][a-z-]*)`).FindAllStringSubmatch(string(b), -1) {
			if m[1] != "imagegen" {
				out = append(out, m[1])
			}
		}
	}
	if len(out) < 4 {
		t.Fatalf("found only imagegen subcommands %v", out)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// diff says what one list has that the other lacks.
func diff(t *testing.T, what string, en, cn []string) {
	t.Helper()
	var missing, extra []string
	for _, s := range en {
		if !slices.Contains(cn, s) {
			missing = append(missing, s)
		}
	}
	for _, s := range cn {
		if !slices.Contains(en, s) {
			extra = append(extra, s)
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Errorf("README.md and README_CN.md disagree on %s: README_CN.md lacks %v and has %v that README.md does not", what, missing, extra)
	}
}

// The sections README_CN.md translates, by README.md's heading.
var translated = []string{"The worker", "Using it from GitHub Actions", "Security"}

// README_CN.md tells Chinese readers what README.md tells: the same
// worker input fields and their variables, the same environment variables
// in the worker, GitHub Actions and security sections, and the same
// commands. A change to one without the other fails here.
func TestREADMECNAgreesWithREADME(t *testing.T) {
	en, cn := readDoc(t, "README.md"), readDoc(t, "README_CN.md")
	enFields, enVars := inputTable(en)
	cnFields, cnVars := inputTable(cn)
	if len(enFields) < 10 {
		t.Fatalf("README.md's input table has only %v", enFields)
	}
	diff(t, "the input fields", enFields, cnFields)
	diff(t, "the input fields' environment variables", enVars, cnVars)
	enSec, cnSec := sections(en), sections(cn)
	for _, title := range translated {
		e, ok := enSec[title]
		if !ok {
			t.Fatalf("README.md has no section %q", title)
		}
		c, ok := cnSec[title]
		if !ok {
			t.Errorf("README_CN.md has no section headed \"## ... (%s)\"", title)
			continue
		}
		diff(t, "the environment variables of "+title, envVars(e), envVars(c))
	}
	diff(t, "the commands", commands(t, en), commands(t, cn))
}

// The checks above find a disagreement when there is one.
func TestREADMECNCheckFindsDifferences(t *testing.T) {
	en := "## The worker (The worker)\n\n| input | environment |\n|---|---|\n| `a` | `A_VAR` |\n| `b` | |\n\nSet `X_VAR=1`; run `scripts/devenv up` and `imagegen render`.\n"
	if f, v := inputTable(en); !slices.Equal(f, []string{"a", "b"}) || !slices.Equal(v, []string{"A_VAR"}) {
		t.Errorf("inputTable = %v %v", f, v)
	}
	if got := envVars(sections(en)["The worker"]); !slices.Equal(got, []string{"A_VAR", "X_VAR"}) {
		t.Errorf("envVars = %v", got)
	}
	if got := commands(t, en); !slices.Equal(got, []string{"imagegen render", "scripts/devenv up"}) {
		t.Errorf("commands = %v", got)
	}
	ft := &testing.T{}
	diff(ft, "x", []string{"a", "b"}, []string{"a"})
	if !ft.Failed() {
		t.Error("diff found no difference between [a b] and [a]")
	}
}
