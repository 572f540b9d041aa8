package shm

import (
	"errors"
	"strings"
	"testing"
)

// On macOS a name may be at most 30 bytes without its '/' (PSHMNAMLEN = 31
// with it), and a longer one is a clear error, not ENAMETOOLONG from libc.
func TestDarwinNameRule(t *testing.T) {
	if _, err := cleanName("/" + strings.Repeat("x", 30)); err != nil {
		t.Fatalf("a 30-byte name: %v", err)
	}
	_, err := cleanName(strings.Repeat("x", 31))
	var ne *NameError
	if !errors.As(err, &ne) || !strings.Contains(ne.Rule, "31 bytes") {
		t.Fatalf("a 31-byte name: %v, want a NameError naming the 31-byte rule", err)
	}
}
