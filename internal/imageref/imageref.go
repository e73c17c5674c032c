// Package imageref checks image references the one way the project does,
// wherever they come from (a variants file, a --cache-to flag): Docker's
// grammar (github.com/distribution/reference), a port in 1..65535 without
// leading zeros, none of the characters that let a reference be read as
// something else (',' '=' quotes '$' spaces), and go-containerregistry's
// parse, since it pushes the images.
package imageref

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
)

// Kind is what a field holding an image reference may hold.
type Kind int

const (
	// Repository is a repository without tag or digest (image).
	Repository Kind = iota
	// Tagged is repository:tag, without digest (a full reference in tags).
	Tagged
	// Image is a repository with an optional tag and digest (base).
	Image
)

var hex64 = regexp.MustCompile(`^[a-f0-9]{64}$`)

// isRefChar says whether r occurs in the reference grammar at all: any
// other character a value carries (',' '=' quotes '$' spaces) is reported
// by name.
func isRefChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:/@[]-", r)
}

// checkReference says why s is not a reference of that kind, or "". The
// grammar is Docker's (github.com/distribution/reference), plus a port in
// 1..65535 without leading zeros; go-containerregistry, which pushes the
// images, must accept it too.
func Check(s string, kind Kind) string {
	if s == "" {
		return "it is empty"
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return !isRefChar(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Sprintf("it contains %s, which no image reference contains", strconv.QuoteRune(r))
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return grammarError(s)
	}
	if why := checkPort(reference.Domain(named)); why != "" {
		return why
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	switch {
	case kind == Repository && (tagged || digested):
		return "it has a tag or digest; image is the repository alone (tags go in tags)"
	case kind == Tagged && (!tagged || digested):
		return "a full reference in tags needs a tag (repository:tag) and no digest"
	}
	return checkGGCR(s, kind)
}

// grammarError explains why s, made of valid characters only, does not
// parse as a reference.
func grammarError(s string) string {
	nameEnd := len(s)
	if i := strings.IndexByte(s, '@'); i >= 0 {
		nameEnd = i
	}
	if i := strings.LastIndexByte(s[:nameEnd], ':'); i > strings.LastIndexByte(s[:nameEnd], '/') {
		nameEnd = i // a tag, or the port of a bare domain
	}
	parts := strings.Split(s[:nameEnd], "/")
	for i, p := range parts {
		switch {
		case p == "":
			return "it has an empty path component ('//', or '/' at an end)"
		case p == "." || p == "..":
			return fmt.Sprintf("it has the path component %q", p)
		case i > 0 && strings.ToLower(p) != p:
			return "the repository path must be lower-case"
		}
	}
	if hex64.MatchString(s) {
		return "a 64-hex-digit name is an image ID, not a reference"
	}
	if len(s) > 255 {
		return "it is longer than 255 characters"
	}
	return "it does not follow the reference grammar [host[:port]/]path[:tag][@digest], path components being lower-case letters and digits separated by '.', '_', '__' or '-', tags at most 128 letters, digits, '_', '.', '-'"
}

// checkPort checks the port of a registry host, if it has one.
func checkPort(domain string) string {
	i := strings.LastIndexByte(domain, ':')
	if i < 0 || i < strings.LastIndexByte(domain, ']') {
		return ""
	}
	port := domain[i+1:]
	n, err := strconv.Atoi(port)
	switch {
	case err != nil || n < 1 || n > 65535:
		return fmt.Sprintf("port %s is not between 1 and 65535", clip(port, 12))
	case port[0] == '0':
		return fmt.Sprintf("port %s has a leading zero", port)
	}
	return ""
}

// checkGGCR parses s as go-containerregistry does when it pushes.
func checkGGCR(s string, kind Kind) string {
	var err error
	switch kind {
	case Repository:
		_, err = name.NewRepository(s)
	case Tagged:
		_, err = name.NewTag(s)
	default:
		_, err = name.ParseReference(s)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// Normalised is the reference's canonical form, so that x/y:t and
// docker.io/x/y:t compare equal; s must be valid.
func Normalised(s string) string {
	if named, err := reference.ParseNormalizedNamed(s); err == nil {
		return named.String()
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
