package main

import (
	"reflect"
	"strings"
	"testing"
)

type exited int

// failing calls fail with os.Exit replaced, and returns the exit code.
func failing(t *testing.T, f string, a ...any) (code int) {
	t.Helper()
	saved := exit
	exit = func(c int) { panic(exited(c)) }
	defer func() {
		exit = saved
		p := recover()
		c, ok := p.(exited)
		if !ok {
			t.Fatalf("fail did not exit: %v", p)
		}
		code = int(c)
	}()
	fail(f, a...)
	return -1
}

// fail stops what the bench started (a containerd, its folders, the work
// folder) before it exits, the last registered first; a cleanup already
// done by its owner is not run again, and none runs twice.
func TestFailRunsCleanupsBeforeExit(t *testing.T) {
	var ran []string
	atCleanup(func() { ran = append(ran, "work folder") })
	done := atCleanup(func() { ran = append(ran, "stopped containerd") })
	atCleanup(func() { ran = append(ran, "running containerd") })
	done() // that one was stopped by its owner
	if code := failing(t, "ctr pull %s did not unpack", "x"); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := []string{"running containerd", "work folder"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("cleanups ran %q, want %q", ran, want)
	}
	runCleanups()
	if len(ran) != 2 {
		t.Errorf("cleanups ran again: %q", ran)
	}
}

// A cleanup that fails (and so calls fail again) still lets the others
// run, each once, and does not loop.
func TestFailInsideACleanup(t *testing.T) {
	var ran []string
	atCleanup(func() { ran = append(ran, "work folder") })
	atCleanup(func() { ran = append(ran, "containerd"); fail("unmount: busy") })
	failing(t, "first")
	runCleanups()
	if want := []string{"containerd", "work folder"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("cleanups ran %q, want %q", ran, want)
	}
}

// --only writes some sections: into bench/RESULTS.md it would wipe the
// others, so it needs --out.
func TestOnlyNeedsOut(t *testing.T) {
	for _, c := range []struct {
		only   string
		outSet bool
		ok     bool
	}{
		{"", false, true},
		{"", true, true},
		{"compression", true, true},
		{"compression", false, false},
		{"matrix,worker", false, false},
	} {
		err := checkOut(c.only, c.outSet)
		if (err == nil) != c.ok {
			t.Errorf("checkOut(%q, %v) = %v, want ok %v", c.only, c.outSet, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--out") {
			t.Errorf("checkOut(%q): %v does not say --out", c.only, err)
		}
	}
}
