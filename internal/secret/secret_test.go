package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNeverPrinted(t *testing.T) {
	v := New("ghp_supersecret123")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "pat", v)
	b, _ := json.Marshal(struct{ P Value }{v})
	for _, s := range []string{fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s %q", v, v, v, v, v), string(b), logs.String(), fmt.Sprintf("%v", struct{ P Value }{v})} {
		if strings.Contains(s, "supersecret") {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if v.Reveal() != "ghp_supersecret123" {
		t.Error("Reveal")
	}
}

func TestRedactor(t *testing.T) {
	var r Redactor
	r.Add(New("ghp_supersecret123"), New("abc"))
	if got := r.Redact("token ghp_supersecret123 and abc"); got != "token [redacted] and abc" {
		t.Errorf("got %q", got)
	}
}

// A key printed line by line (a job cats a PEM file) is redacted line by
// line, also when the worker got it with \n escapes (an env variable).
func TestRedactorMultiLine(t *testing.T) {
	key := "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx1aB2cD3eF4gH5iJ6kL7mN8oP9\nqR0sT1uV2wX3yZ4aB5cD6eF7gH8iJ9kL0mN1oP2qR3\nAB==\n-----END RSA PRIVATE KEY-----\n"
	for name, v := range map[string]string{"newlines": key, "escaped": strings.ReplaceAll(key, "\n", `\n`)} {
		var r Redactor
		r.Add(New(v))
		for _, l := range strings.Split(key, "\n")[1:3] {
			if got := r.Redact("cat: " + l); got != "cat: [redacted]" {
				t.Errorf("%s: %q", name, got)
			}
		}
		if got := r.Redact("AB== and x"); got != "AB== and x" {
			t.Errorf("%s: a short line garbles text: %q", name, got)
		}
	}
}

func TestPreview(t *testing.T) {
	for in, want := range map[string]string{
		"my-org":                 `"my-org"`,
		"a\x1b[31m\x00":          `"a\x1b[31m\x00"`,
		strings.Repeat("a", 33):  "(a value of 33 bytes)",
		"ghp_abc":                "(a value that looks like a credential)",
		"x GITHUB_PAT_123":       "(a value that looks like a credential)",
		"-----BEGIN PRIVATE KEY": "(a value that looks like a credential)",
	} {
		if got := Preview(in); got != want {
			t.Errorf("Preview(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCapLine(t *testing.T) {
	if got := CapLine("short", 4096); got != "short" {
		t.Error(got)
	}
	long := strings.Repeat("é", 5000)
	got := CapLine(long, 4096)
	if len(got) > 4096 || !strings.HasSuffix(got, "[cut, 10000 bytes in all]") || !utf8.ValidString(got) {
		t.Errorf("%d bytes, valid %v: ...%s", len(got), utf8.ValidString(got), got[len(got)-40:])
	}
}

// Values over 20 bytes are never quoted, nor shorter runs of mixed
// letters and digits (an AWS key id, a random token).
func TestPreviewHidesTokenLikeValues(t *testing.T) {
	for in, want := range map[string]string{
		"AKIAIOSFODNN7EXAMPLE":  "(a value that looks like a credential)",
		"x a1B2c3D4e5F6g7H8":    "(a value that looks like a credential)",
		"k3j4h5g6f7d8s9a0":      "(a value that looks like a credential)",
		strings.Repeat("a", 21): "(a value of 21 bytes)",
		"my-org-2024":           `"my-org-2024"`,
		"octo/hello-world":      `"octo/hello-world"`,
		"abcdefghijklmnopqrst":  `"abcdefghijklmnopqrst"`,
		"12345678901234567890":  `"12345678901234567890"`,
		"gpu-runners":           `"gpu-runners"`,
	} {
		if got := Preview(in); got != want {
			t.Errorf("Preview(%q) = %s, want %s", in, got, want)
		}
	}
}
