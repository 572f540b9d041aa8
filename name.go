package shm

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Segment names.
//
// A name is what shm_open(3) takes, without its leading '/': one leading '/'
// is accepted and dropped, so "/cam0" and "cam0" name the same segment. The
// empty name asks Create for a fresh random name. A name may not be "/" alone,
// "." or "..", contain another '/', contain a NUL byte, or be longer than the
// platform allows (maxNameLen bytes without the '/'; on macOS that is 30,
// since the system's limit of 31 counts the '/'). Create also refuses
// control characters.

// randomPrefix starts every name that Create picks by itself.
const randomPrefix = "shm-"

// cleanName validates name and returns it without its leading '/'.
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	switch {
	case name == "":
		return "", &NameError{Name: name, Rule: "empty name (only Create picks a random name for \"\")"}
	case n == "":
		return "", &NameError{Name: name, Rule: "\"/\" alone names nothing"}
	case n == "." || n == "..":
		return "", &NameError{Name: name, Rule: "\".\" and \"..\" are not names"}
	case strings.IndexByte(n, '/') >= 0:
		return "", &NameError{Name: name, Rule: "'/' is allowed only as the first byte"}
	case strings.IndexByte(n, 0) >= 0:
		return "", &NameError{Name: name, Rule: "NUL byte in name"}
	case len(n) > maxNameLen:
		return "", &NameError{Name: name, Rule: nameLenRule}
	}
	return n, nil
}

// cleanNewName is cleanName for a name Create makes: it also refuses
// control characters (bytes below 0x20 and 0x7f). The system allows them,
// and Open, Remove and the tools accept such names made by others (and
// print them quoted), but a name that can move a terminal's cursor or
// retitle it is never one this package makes.
func cleanNewName(name string) (string, error) {
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x20 || c == 0x7f {
			return "", &NameError{Name: name, Rule: "control character in name"}
		}
	}
	return n, nil
}

// randomName returns a fresh name that is valid on every platform.
func randomName() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand panics internally if it could)
	return randomPrefix + hex.EncodeToString(b[:])
}
