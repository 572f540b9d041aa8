package shm

import (
	"fmt"
	"io/fs"
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
//
// If b lies in a segment opened ReadOnly and T holds a lock or an event of
// this package (which write to their memory, to wait as well), View refuses
// with an error matching fs.ErrPermission: using them there would fault.
func View[T any](b []byte) (*T, error) {
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	if err := checkPointerFree(t); err != nil {
		return nil, err
	}
	if len(b) > 0 && holdsPrimitive(t) && readOnlyAt(uintptr(unsafe.Pointer(&b[0]))) {
		return nil, fmt.Errorf("%w: %v holds locks or events, which write to memory, and the segment was opened read-only", fs.ErrPermission, t)
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

// primitiveTypes are the types that write to their memory when used.
var primitiveTypes = map[reflect.Type]bool{
	reflect.TypeOf(Mutex{}):           true,
	reflect.TypeOf(RWMutex{}):         true,
	reflect.TypeOf(AutoEvent{}):       true,
	reflect.TypeOf(ManualEvent{}):     true,
	reflect.TypeOf(BusyAutoEvent{}):   true,
	reflect.TypeOf(BusyManualEvent{}): true,
}

// holdsPrimitive reports whether t is or holds a lock or event.
func holdsPrimitive(t reflect.Type) bool {
	if primitiveTypes[t] {
		return true
	}
	switch t.Kind() {
	case reflect.Array:
		return t.Len() > 0 && holdsPrimitive(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if holdsPrimitive(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
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

// CreateValue makes a segment that holds one T (a pointer-free type, as
// View takes), sized for it, and returns it with a pointer to its T. init,
// if not nil, fills the T before any other process can open the segment
// (on Linux; elsewhere right after creation, so peers should wait for a
// sign from it, an event or a flag, before they read). The options are
// Create's. The caller owns the segment.
func CreateValue[T any](name string, init func(*T), opts ...Option) (*Segment, *T, error) {
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	if err := checkPointerFree(t); err != nil {
		return nil, nil, &Error{Op: "create", Name: name, Err: err}
	}
	size := int(unsafe.Sizeof(zero))
	if size == 0 {
		size = 1
	}
	var hook func([]byte)
	if init != nil {
		hook = func(b []byte) { init((*T)(unsafe.Pointer(&b[0]))) }
	}
	seg, err := Create(name, size, append(opts[:len(opts):len(opts)], withInit(hook))...)
	if err != nil {
		return nil, nil, err
	}
	v, err := View[T](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, &Error{Op: "create", Name: seg.name, Err: err}
	}
	return seg, v, nil
}

// OpenValue opens a segment that holds a T (made by CreateValue, or any
// segment at least as large as T) and returns it with a pointer to its T.
// The options are Open's; with ReadOnly, a T that holds locks or events is
// refused (see View).
func OpenValue[T any](name string, opts ...Option) (*Segment, *T, error) {
	seg, err := Open(name, opts...)
	if err != nil {
		return nil, nil, err
	}
	v, err := View[T](seg.Bytes())
	if err != nil {
		seg.Close()
		return nil, nil, &Error{Op: "open", Name: seg.name, Err: err}
	}
	return seg, v, nil
}
