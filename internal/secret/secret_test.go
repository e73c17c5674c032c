package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
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
