package bench

import (
	"fmt"
	"unsafe"

	"github.com/go-shm/shm"
)

// Uncontended cell operations: one goroutine stores a 64-byte value into a
// Cell, or loads it, against the plain copy() of 64 bytes into and out of
// the same memory (the floor of any shared value).

// CellValue is the size of the cell loops' value.
const CellValue = 64

// CellOpsSize is how many bytes NewCellOps needs.
func CellOpsSize() int { return 64 + CellValue + shm.CellSize(CellValue) + 64 }

// CellOps is a Cell with its writer attached in this process, and 64
// bytes of the same memory, on a cache line of their own, for the copy()
// baselines.
type CellOps struct {
	c     *shm.Cell
	w     *shm.CellWriter
	plain []byte
	val   [CellValue]byte
	buf   [CellValue]byte
}

// NewCellOps lays out a cell and the plain bytes in mem (CellOpsSize
// bytes: a segment's, or process memory) and attaches the cell's writer.
func NewCellOps(mem []byte) (*CellOps, error) {
	if len(mem) < CellOpsSize() {
		return nil, fmt.Errorf("bench: %d bytes for a cell of %d", len(mem), CellOpsSize())
	}
	off := int((64 - uintptr(unsafe.Pointer(&mem[0]))%64) % 64)
	o := &CellOps{plain: mem[off : off+CellValue : off+CellValue]}
	c, err := shm.FormatCell(mem[off+CellValue:], CellValue)
	if err != nil {
		return nil, err
	}
	o.c = c
	if o.w, err = c.Writer(); err != nil {
		return nil, err
	}
	return o, nil
}

// Close detaches the writer.
func (o *CellOps) Close() {
	o.w.Close()
	o.c.Close()
}

// StoreLoop stores a 64-byte value into the cell n times (Store), its
// first byte changing each time.
func (o *CellOps) StoreLoop(n int) {
	for i := 0; i < n; i++ {
		o.val[0] = byte(i)
		if err := o.w.Store(o.val[:]); err != nil {
			panic("bench: " + err.Error())
		}
	}
}

// LoadLoop loads the cell's value n times (Load).
func (o *CellOps) LoadLoop(n int) {
	for i := 0; i < n; i++ {
		if _, err := o.c.Load(o.buf[:]); err != nil {
			panic("bench: " + err.Error())
		}
	}
}

// CopyInLoop copies the 64-byte value into the plain bytes n times, its
// first byte changing each time: the baseline of StoreLoop.
func (o *CellOps) CopyInLoop(n int) {
	for i := 0; i < n; i++ {
		o.val[0] = byte(i)
		copy(o.plain, o.val[:])
	}
}

// CopyOutLoop copies the plain bytes out n times: the baseline of
// LoadLoop.
func (o *CellOps) CopyOutLoop(n int) {
	for i := 0; i < n; i++ {
		copy(o.buf[:], o.plain)
	}
}
