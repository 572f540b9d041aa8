//go:build !darwin

package shm

// maxNameLen is the longest name, in bytes, without its leading '/'
// (NAME_MAX on Linux and FreeBSD; Windows allows far more, and we keep
// the same limit so that a name valid here is valid there).
const maxNameLen = 255

const nameLenRule = "longer than 255 bytes"
