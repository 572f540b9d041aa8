package proc

import (
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// fakeSysctl answers sysctl reads from a table: a name missing from it is a
// variable the kernel does not have (ENOENT); a name set to unreadable
// fails with EPERM.
type fakeSysctl map[string]int64

const unreadable = -1

func (f fakeSysctl) get(name string) (uint32, error) {
	v, ok := f[name]
	switch {
	case !ok:
		return 0, syscall.ENOENT
	case v == unreadable:
		return 0, syscall.EPERM
	}
	return uint32(v), nil
}

// with returns a copy of f with the given name=value pairs changed; a value
// of absent removes the variable.
const absent = -2

func (f fakeSysctl) with(kv ...any) fakeSysctl {
	g := fakeSysctl{}
	for k, v := range f {
		g[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		name, v := kv[i].(string), int64(kv[i+1].(int))
		if v == absent {
			delete(g, name)
		} else {
			g[name] = v
		}
	}
	return g
}

func (f fakeSysctl) String() string {
	var s []string
	for k, v := range f {
		s = append(s, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// The names are spelled out here rather than taken from visibility.go, so
// that a misspelt name there fails the test.
var freebsdDefaults = fakeSysctl{
	"security.bsd.see_other_uids": 1,
	"security.bsd.see_other_gids": 1,
	"security.bsd.see_jail_proc":  1,
	"security.bsd.suser_enabled":  1,
	"security.jail.jailed":        0,
}

// TestFreeBSDESRCH: ESRCH means gone only where the caller sees every
// process; wherever a setting may hide a live one, it means unknown.
func TestFreeBSDESRCH(t *testing.T) {
	const root, user = 0, 1001
	d := freebsdDefaults
	for _, c := range []struct {
		name string
		euid int
		s    fakeSysctl
		want lookupResult
	}{
		// Nothing hides anything.
		{"defaults, user", user, d, gone},
		{"defaults, root", root, d, gone},

		// see_other_uids=0: other users' processes are hidden, except from
		// root (PRIV_SEEOTHERUIDS) while the superuser policy is on.
		{"see_other_uids=0, user", user, d.with("security.bsd.see_other_uids", 0), unknown},
		{"see_other_uids=0, root", root, d.with("security.bsd.see_other_uids", 0), gone},
		{"see_other_uids=0, root, suser_enabled=0", root, d.with("security.bsd.see_other_uids", 0, "security.bsd.suser_enabled", 0), unknown},

		// see_other_gids=0: processes sharing no group are hidden, except
		// from root (PRIV_SEEOTHERGIDS).
		{"see_other_gids=0, user", user, d.with("security.bsd.see_other_gids", 0), unknown},
		{"see_other_gids=0, root", root, d.with("security.bsd.see_other_gids", 0), gone},
		{"see_other_gids=0, root, suser_enabled=0", root, d.with("security.bsd.see_other_gids", 0, "security.bsd.suser_enabled", 0), unknown},

		// see_jail_proc=0: processes in jails are hidden from the host,
		// except from root (PRIV_SEEJAILPROC).
		{"see_jail_proc=0, user", user, d.with("security.bsd.see_jail_proc", 0), unknown},
		{"see_jail_proc=0, root", root, d.with("security.bsd.see_jail_proc", 0), gone},
		{"see_jail_proc=0, root, suser_enabled=0", root, d.with("security.bsd.see_jail_proc", 0, "security.bsd.suser_enabled", 0), unknown},

		// All three.
		{"all restricted, user", user, d.with("security.bsd.see_other_uids", 0, "security.bsd.see_other_gids", 0, "security.bsd.see_jail_proc", 0), unknown},
		{"all restricted, root", root, d.with("security.bsd.see_other_uids", 0, "security.bsd.see_other_gids", 0, "security.bsd.see_jail_proc", 0), gone},
		{"all restricted, root, suser_enabled=0", root, d.with("security.bsd.see_other_uids", 0, "security.bsd.see_other_gids", 0, "security.bsd.see_jail_proc", 0, "security.bsd.suser_enabled", 0), unknown},

		// suser_enabled=0 alone changes nothing when nothing is restricted.
		{"suser_enabled=0, root", root, d.with("security.bsd.suser_enabled", 0), gone},
		{"suser_enabled=0, user", user, d.with("security.bsd.suser_enabled", 0), gone},

		// In a jail, processes outside it are invisible to everyone,
		// root included, whatever the see_* settings.
		{"jailed, user", user, d.with("security.jail.jailed", 1), unknown},
		{"jailed, root", root, d.with("security.jail.jailed", 1), unknown},
		{"jailed, see_other_uids=0, root", root, d.with("security.jail.jailed", 1, "security.bsd.see_other_uids", 0), unknown},
		{"jailed, see_jail_proc=0, root", root, d.with("security.jail.jailed", 1, "security.bsd.see_jail_proc", 0), unknown},
		{"jailed, all restricted, user", user, d.with("security.jail.jailed", 1, "security.bsd.see_other_uids", 0, "security.bsd.see_other_gids", 0, "security.bsd.see_jail_proc", 0), unknown},

		// MAC policy modules that hide processes: loaded and enabled hide
		// from everyone (root included: conservative); loaded but disabled
		// hide nothing.
		{"mac_seeotheruids, user", user, d.with("security.mac.seeotheruids.enabled", 1), unknown},
		{"mac_seeotheruids, root", root, d.with("security.mac.seeotheruids.enabled", 1), unknown},
		{"mac_seeotheruids disabled, user", user, d.with("security.mac.seeotheruids.enabled", 0), gone},
		{"mac_partition, root", root, d.with("security.mac.partition.enabled", 1), unknown},
		{"mac_partition disabled, user", user, d.with("security.mac.partition.enabled", 0), gone},
		{"mac_biba, root", root, d.with("security.mac.biba.enabled", 1), unknown},
		{"mac_mls, root", root, d.with("security.mac.mls.enabled", 1), unknown},
		{"mac_lomac, user", user, d.with("security.mac.lomac.enabled", 1), unknown},

		// A kernel without see_jail_proc (older releases) has no such
		// policy.
		{"no see_jail_proc, user", user, d.with("security.bsd.see_jail_proc", absent), gone},
		{"no see_jail_proc, see_other_uids=0, user", user, d.with("security.bsd.see_jail_proc", absent, "security.bsd.see_other_uids", 0), unknown},

		// A setting that cannot be read counts as restrictive.
		{"jailed unreadable, root", root, d.with("security.jail.jailed", unreadable), unknown},
		{"see_other_uids unreadable, user", user, d.with("security.bsd.see_other_uids", unreadable), unknown},
		{"see_other_gids unreadable, user", user, d.with("security.bsd.see_other_gids", unreadable), unknown},
		{"see_jail_proc unreadable, user", user, d.with("security.bsd.see_jail_proc", unreadable), unknown},
		{"see_other_uids unreadable, root", root, d.with("security.bsd.see_other_uids", unreadable), gone}, // root sees through it anyway
		{"suser_enabled unreadable, see_other_uids=0, root", root, d.with("security.bsd.suser_enabled", unreadable, "security.bsd.see_other_uids", 0), unknown},
		{"suser_enabled unreadable, root", root, d.with("security.bsd.suser_enabled", unreadable), gone},
		{"mac_mls unreadable, user", user, d.with("security.mac.mls.enabled", unreadable), unknown},
	} {
		if got := freebsdESRCH(c.euid, c.s.get); got != c.want {
			t.Errorf("%s: freebsdESRCH(euid %d, %v) = %s, want %s", c.name, c.euid, c.s, resultName(got), resultName(c.want))
		}
	}
}

func resultName(r lookupResult) string {
	switch r {
	case found:
		return "found"
	case gone:
		return "gone"
	case unknown:
		return "unknown"
	}
	return fmt.Sprint(int(r))
}

// The settings are read by their exact names.
func TestFreeBSDESRCHReads(t *testing.T) {
	read := map[string]bool{}
	freebsdESRCH(1001, func(name string) (uint32, error) {
		read[name] = true
		return freebsdDefaults.get(name)
	})
	for _, name := range []string{
		"security.jail.jailed",
		"security.bsd.see_other_uids",
		"security.bsd.see_other_gids",
		"security.bsd.see_jail_proc",
		"security.mac.seeotheruids.enabled",
		"security.mac.partition.enabled",
		"security.mac.biba.enabled",
		"security.mac.mls.enabled",
		"security.mac.lomac.enabled",
	} {
		if !read[name] {
			t.Errorf("%s not read", name)
		}
	}
}
