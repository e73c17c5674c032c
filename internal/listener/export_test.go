package listener

import "syscall"

// WatchKill makes the session send its signals through kill (syscall.Kill's
// contract: a negative pid signals a process group).
func WatchKill(c *Config, kill func(pid int, sig syscall.Signal) error) { c.kill = kill }
