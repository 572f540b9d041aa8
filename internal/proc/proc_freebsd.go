package proc

import "os"

// Placeholder until the port for this system lands: the start tag is
// constant and every process is taken to be alive, so owner death is never
// detected (never wrongly detected either).

func selfID() ID { return ID{PID: uint32(os.Getpid()), Start: 1} }

func alive(ID) bool { return true }
