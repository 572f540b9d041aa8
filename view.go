package shm

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"
)

// View returns a pointer to a T that lives at the start of b, typically
// shared memory such as seg.Bytes()[off:], so that processes can share a Go
// struct: its fields read and write the shared bytes directly.
//
// T must be pointer-free (booleans, numbers, arrays and structs of them, and
// this package's Mutex, RWMutex and events), since a pointer into one
// process's memory means nothing in another. View checks that, that b is
// long enough, and that b is aligned for T; it returns an error otherwise.
// The pointer is valid as long as the memory stays mapped. Fields that
// several processes use at once need atomic access (sync/atomic) or a lock.
func View[T any](b []byte) (*T, error) {
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	if err := checkPointerFree(t); err != nil {
		return nil, err
	}
	size, align := unsafe.Sizeof(zero), unsafe.Alignof(zero)
	if uintptr(len(b)) < size || size == 0 && len(b) == 0 {
		return nil, fmt.Errorf("%w: %v needs %d bytes, have %d", ErrRange, t, size, len(b))
	}
	if size == 0 {
		return (*T)(unsafe.Pointer(&b[0])), nil
	}
	p := unsafe.Pointer(&b[0])
	if uintptr(p)%align != 0 {
		return nil, fmt.Errorf("%w: %v needs %d-byte alignment, address is %#x", ErrRange, t, align, uintptr(p))
	}
	return (*T)(p), nil
}

var pointerFree sync.Map // reflect.Type -> error (nil if pointer-free)

func checkPointerFree(t reflect.Type) error {
	if v, ok := pointerFree.Load(t); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	var err error
	if bad := findPointer(t, t.String()); bad != "" {
		err = fmt.Errorf("shm: %v cannot live in shared memory: %s holds a pointer", t, bad)
	}
	if err == nil {
		pointerFree.Store(t, nil)
	} else {
		pointerFree.Store(t, err)
	}
	return err
}

// findPointer returns the path of the first field of t that is or holds a
// pointer, or "".
func findPointer(t reflect.Type, path string) string {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return ""
	case reflect.Array:
		return findPointer(t.Elem(), path+"[]")
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if bad := findPointer(f.Type, path+"."+f.Name); bad != "" {
				return bad
			}
		}
		return ""
	}
	return path + " (" + t.Kind().String() + ")"
}
