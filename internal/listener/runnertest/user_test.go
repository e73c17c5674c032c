package runnertest

import (
	"os"
	"os/user"
	"testing"
)

// Two leases are two accounts; a released account is deleted.
func TestLeaseUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("not root: cannot create users (CI runs as root)")
	}
	a, err := LeaseUser()
	if err != nil {
		t.Fatal(err)
	}
	b, err := LeaseUser() // another test process, in effect
	if err != nil {
		t.Fatal(err)
	}
	if a.User.Username == b.User.Username {
		t.Fatalf("two leases share %s", a.User.Username)
	}
	for _, l := range []*Lease{a, b} {
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
		if _, err := user.Lookup(l.User.Username); err == nil {
			t.Errorf("user %s left behind", l.User.Username)
		}
	}
}
