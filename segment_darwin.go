package shm

import "errors"

// Placeholder until the darwin port lands.

type osSegment struct{}

func osCreate(name string, size int, o *options) ([]byte, osSegment, error) {
	return nil, osSegment{}, errors.ErrUnsupported
}

func osOpen(name string, o *options) ([]byte, osSegment, error) {
	return nil, osSegment{}, errors.ErrUnsupported
}

func osRemove(name string) error { return errors.ErrUnsupported }

func osClose(data []byte, _ *osSegment) error { return nil }
