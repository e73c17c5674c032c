package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// exit is os.Exit; tests replace it.
var exit = os.Exit

// cleanups are what the bench started and must stop however it ends (a
// containerd, its folders, the work folder): fail and the end of main run
// them, the last registered first.
var cleanups struct {
	sync.Mutex
	next int
	fns  map[int]func()
}

// atCleanup registers f; done unregisters it once its owner has cleaned up.
func atCleanup(f func()) (done func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.fns == nil {
		cleanups.fns = map[int]func(){}
	}
	id := cleanups.next
	cleanups.next++
	cleanups.fns[id] = f
	return func() {
		cleanups.Lock()
		delete(cleanups.fns, id)
		cleanups.Unlock()
	}
}

// runCleanups runs the registered cleanups, the last registered first. Each
// is unregistered before it runs, so a cleanup that calls fail is not run
// again, and neither is any other.
func runCleanups() {
	for {
		cleanups.Lock()
		id := -1
		for i := range cleanups.fns {
			id = max(id, i)
		}
		f := cleanups.fns[id]
		delete(cleanups.fns, id)
		cleanups.Unlock()
		if id < 0 {
			return
		}
		f()
	}
}

// cleanupOnSignal makes an interrupted bench (Ctrl-C, kill) clean up too.
func cleanupOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() { fail("%v: stopping", <-ch) }()
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
	runCleanups()
	exit(1)
}

// checkOut refuses --only without --out: the file it writes holds only the
// sections run, so writing bench/RESULTS.md would wipe the others.
func checkOut(only string, outSet bool) error {
	if only == "" || outSet {
		return nil
	}
	return errors.New("--only writes only the sections it runs: give --out FILE (e.g. --out /tmp/sections.md) and merge it into bench/RESULTS.md by hand, or --out bench/RESULTS.md to replace the whole file")
}
