package jobapi

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// Fields lists every field of Input, in order, each with its own
// variable: a field added to one only fails here.
func TestFieldsMatchInput(t *testing.T) {
	typ := reflect.TypeFor[Input]()
	if typ.NumField() != len(Fields) {
		t.Errorf("Input has %d fields, Fields lists %d", typ.NumField(), len(Fields))
	}
	envs := map[string]bool{}
	for i := range min(typ.NumField(), len(Fields)) {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if tag != Fields[i].Name {
			t.Errorf("Input field %d is %q, Fields says %q", i, tag, Fields[i].Name)
		}
		if e := Fields[i].Env; e != "" && envs[e] {
			t.Errorf("%s backs two fields", e)
		}
		envs[Fields[i].Env] = true
	}
}

func TestStatusAndPolicy(t *testing.T) {
	for s, want := range map[Status]bool{InQueue: false, InProgress: false, Completed: true, Failed: true, Cancelled: true, TimedOut: true, "": false} {
		if s.Terminal() != want {
			t.Errorf("%q.Terminal() = %v", s, !want)
		}
	}
	if p := NewPolicy(0, -time.Second); p != nil {
		t.Errorf("no bounds: %+v", p)
	}
	if p := NewPolicy(time.Minute, 2*time.Second); p == nil || p.ExecutionTimeout != 60000 || p.TTL != 2000 {
		t.Errorf("policy %+v", p)
	}
	if String("") != nil || *String("x") != "x" || Seconds(0) != nil || string(Seconds(90*time.Second)) != "90" || string(List(nil)) != "null" {
		t.Error("field helpers")
	}
}
