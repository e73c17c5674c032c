package listener

import "syscall"

// WatchKill makes the session signal process groups through kill.
func WatchKill(c *Config, kill func(pgid int, sig syscall.Signal) error) { c.kill = kill }
