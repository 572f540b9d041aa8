package main

import "strconv"

// show returns a segment name or a path fit for a terminal: as it is when
// it holds only printable ASCII other than space and '"', else quoted and
// escaped, so that a name chosen by another user cannot move the cursor,
// clear the screen, retitle the window or fake rows of output.
func show(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' {
			return strconv.QuoteToASCII(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}
