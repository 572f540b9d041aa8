package shm

// maxNameLen is the longest name, in bytes, without its leading '/':
// macOS limits shm_open names to PSHMNAMLEN (31) bytes including the '/'.
const maxNameLen = darwinNameMax - 1

const nameLenRule = "longer than macOS allows (31 bytes counting the leading '/')"
