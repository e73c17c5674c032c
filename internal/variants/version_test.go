package variants

import (
	"strings"
	"testing"
)

// versionLess orders runner versions as semantic versions.
func TestVersionLess(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"2.328.0", "2.329.0", true},
		{"2.329.0", "2.329.0", false},
		{"2.330.0", "2.329.0", false},
		{"2.329.1", "2.329.0", false},
		{"1.999.999", "2.0.0", true},
		{"10.0.0", "9.0.0", false},
		{"2.1000.0", "2.329.0", false},
		// Numbers past int64 compare by value, not as an overflow.
		{"2.99999999999999999999.0", "2.329.0", false},
		{"2.329.99999999999999999999", "2.330.0", true},
	}
	for _, c := range cases {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// A version with a leading zero is malformed, not "older than" anything:
// no runner release is tagged that way.
func TestRunnerVersionLeadingZero(t *testing.T) {
	for _, ver := range []string{"2.0337.0", "02.337.0", "2.337.00"} {
		src := strings.Replace(cpuVariant+tail, `version = "2.337.0"`, `version = "`+ver+`"`, 1)
		_, text, diags := load(t, src, Options{})
		if !diags.HasErrors() || !strings.Contains(text, "Malformed runner version") {
			t.Errorf("runner.version %s: want a malformed-version error, got:\n%s", ver, text)
		}
	}
}
