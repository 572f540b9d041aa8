//go:build !linux

package main

import "errors"

// mappers is not known outside Linux.
func mappers(name string) (int, error) { return 0, errors.ErrUnsupported }
