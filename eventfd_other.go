//go:build !linux

package shm

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// EventFD is a Linux eventfd event; on this system every method reports
// errors.ErrUnsupported.
type EventFD struct{}

const eventFDSupported = false

// createEventFDs has nothing to do: Create refused eventfd kinds already.
func (m *Managed) createEventFDs(nonce [8]byte) error { return nil }

func (m *Managed) openEventFD(i int, e eventEntry) (*EventFD, error) {
	return nil, fmt.Errorf("event %d: %v: %w (eventfd is Linux only)", i, e.kind, errors.ErrUnsupported)
}

// Set reports errors.ErrUnsupported.
func (e *EventFD) Set() error { return errors.ErrUnsupported }

// Reset reports errors.ErrUnsupported.
func (e *EventFD) Reset() error { return errors.ErrUnsupported }

// Wait reports errors.ErrUnsupported.
func (e *EventFD) Wait() error { return errors.ErrUnsupported }

// WaitTimeout reports errors.ErrUnsupported.
func (e *EventFD) WaitTimeout(time.Duration) error { return errors.ErrUnsupported }

// WaitContext reports errors.ErrUnsupported.
func (e *EventFD) WaitContext(context.Context) error { return errors.ErrUnsupported }

// Fd returns -1.
func (e *EventFD) Fd() int { return -1 }

func (e *EventFD) close() error { return nil }
