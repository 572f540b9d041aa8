package shm

import "unsafe"

// lowHalf returns the 32-bit half of *p that holds its low-order bits.
func lowHalf(p *uint64) *uint32 {
	if bigEndian {
		return (*uint32)(unsafe.Add(unsafe.Pointer(p), 4))
	}
	return (*uint32)(unsafe.Pointer(p))
}

var bigEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 0
}()
